/**
 * Command-line flags. Every flag accepts the seed's snake_case spelling (`--model_name`) and the
 * kebab-case one (`--model-name`), as `--flag value` or `--flag=value`. Unknown flags, missing
 * values and malformed numbers are errors that name the flag.
 */
import { ArgumentError } from '../errors.js';
import { readRegularFile } from '../io/files.js';

/** 'optional-string': `--flag` alone is true, `--flag VALUE` is VALUE. */
export type FlagType = 'string' | 'number' | 'int' | 'boolean' | 'int-list' | 'string-list' | 'optional-string';

export interface FlagSpec {
  readonly type: FlagType;
  readonly help: string;
  /** Other names for the same flag (kebab-case, without dashes). */
  readonly aliases?: readonly string[];
  readonly default?: string | number | boolean | readonly number[] | readonly string[];
  /** The command cannot run without it: checked when the flags are parsed, before any work. */
  readonly required?: boolean;
}

export type FlagValues = Record<string, string | number | boolean | number[] | string[] | undefined>;

export interface ParsedArgs {
  readonly flags: FlagValues;
  readonly positional: string[];
}

const normalize = (name: string): string => name.replace(/_/g, '-');

export function parseArgs(argv: readonly string[], specs: Readonly<Record<string, FlagSpec>>, command: string): ParsedArgs {
  const byName = new Map<string, string>();
  for (const [name, spec] of Object.entries(specs)) {
    byName.set(name, name);
    for (const a of spec.aliases ?? []) byName.set(a, name);
  }
  const flags: FlagValues = {};
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--') || arg === '--') {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const rawName = normalize(arg.slice(2, eq === -1 ? undefined : eq));
    const name = byName.get(rawName);
    if (!name) {
      throw new ArgumentError(`${command}: unknown flag --${rawName} (known: ${Object.keys(specs).map((k) => `--${k}`).join(', ')})`);
    }
    const spec = specs[name]!;
    let value: string | undefined = eq === -1 ? undefined : arg.slice(eq + 1);
    if (spec.type === 'boolean') {
      if (value === undefined) flags[name] = true;
      else if (value === 'true' || value === '1') flags[name] = true;
      else if (value === 'false' || value === '0') flags[name] = false;
      else throw new ArgumentError(`${command}: --${name} takes true or false, got "${value}"`);
      continue;
    }
    if (spec.type === 'optional-string' && value === undefined) {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) {
        flags[name] = true;
        continue;
      }
    }
    if (value === undefined) {
      value = argv[i + 1];
      if (value === undefined || (value.startsWith('--') && value.length > 2)) throw new ArgumentError(`${command}: --${name} needs a value`);
      i++;
    }
    flags[name] = convert(value, spec.type, name, command);
  }
  for (const [name, spec] of Object.entries(specs)) {
    if (flags[name] === undefined && spec.default !== undefined) {
      flags[name] = (Array.isArray(spec.default) ? [...spec.default] : spec.default) as FlagValues[string];
    }
    if (spec.required && (flags[name] === undefined || flags[name] === '')) throw new ArgumentError(`${command}: --${name} is required (${spec.help})`);
  }
  return { flags, positional };
}

function convert(value: string, type: FlagType, name: string, command: string): string | number | number[] | string[] {
  const fail = (what: string): never => {
    throw new ArgumentError(`${command}: --${name} must be ${what}, got "${value}"`);
  };
  switch (type) {
    case 'string':
    case 'optional-string':
      return value;
    case 'number': {
      const n = Number(value);
      if (value.trim() === '' || !Number.isFinite(n)) fail('a number');
      return n;
    }
    case 'int': {
      const n = Number(value);
      if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n)) fail('an integer');
      return n;
    }
    case 'int-list': {
      const parts = value.split(',').map((s) => s.trim()).filter((s) => s !== '');
      if (parts.length === 0) fail('a comma-separated list of integers');
      return parts.map((p) => {
        const n = Number(p);
        if (!/^-?\d+$/.test(p) || !Number.isSafeInteger(n)) fail('a comma-separated list of integers');
        return n;
      });
    }
    case 'string-list': {
      const parts = value.split(',').map((s) => s.trim()).filter((s) => s !== '');
      if (parts.length === 0) fail('a comma-separated list');
      return parts;
    }
    default:
      return value;
  }
}

export function requireFlag<T>(flags: FlagValues, name: string, command: string): T {
  const v = flags[name];
  if (v === undefined) throw new ArgumentError(`${command}: --${name} is required`);
  return v as T;
}

export function helpText(command: string, summary: string, specs: Readonly<Record<string, FlagSpec>>): string {
  const line = (name: string, spec: FlagSpec) => {
    const def = spec.default === undefined ? '' : ` (default ${Array.isArray(spec.default) ? spec.default.join(',') : String(spec.default)})`;
    return `  --${name}${spec.type === 'boolean' ? '' : ` <${spec.type}>`}  ${spec.help}${def}`;
  };
  const entries = Object.entries(specs);
  const required = entries.filter(([, s]) => s.required), optional = entries.filter(([, s]) => !s.required);
  const lines = [`spikelm ${command}: ${summary}`, '', 'usage: spikelm ' + [command, ...required.map(([n, s]) => `--${n} <${s.type}>`), optional.length ? '[options]' : ''].filter(Boolean).join(' ')];
  if (required.length) lines.push('', 'required:', ...required.map(([n, s]) => line(n, s)));
  if (optional.length) lines.push('', 'options:', ...optional.map(([n, s]) => line(n, s)));
  lines.push('', 'every flag also takes its snake_case spelling (--model_name) and --flag=value');
  return lines.join('\n');
}

/** The text of the file a flag names; a missing, non-regular or unreadable file is a bad argument. */
export function readFlagFile(file: string, flag: string, what = 'a text file'): string {
  try {
    return readRegularFile(file, what, 'utf8');
  } catch (err) {
    throw new ArgumentError(`${flag} ${(err as Error).message}`);
  }
}

/** An integer flag value ≥ 0 (e.g. --max-new-tokens), or a bad-argument error naming the flag. */
export function nonNegativeInt(v: unknown, flag: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new ArgumentError(`${flag} must be an integer ≥ 0, got ${String(v)}`);
  return v;
}

/** An integer flag value ≥ 1, or a bad-argument error naming the flag. */
export function positiveIntFlag(v: unknown, flag: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new ArgumentError(`${flag} must be an integer ≥ 1, got ${String(v)}`);
  return v;
}
