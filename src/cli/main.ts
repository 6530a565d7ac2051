/**
 * `spikelm <command> [flags]`. Errors print one line, `spikelm: error: …`, and exit non-zero
 * (2 for bad arguments, 1 otherwise); SPIKELM_DEBUG=1 adds the stack trace.
 */
import { ArgumentError, SpikelmError } from '../errors.js';
import { helpText, parseArgs } from './args.js';
import { type CliIO, type Command, processIO } from './command.js';
import { generateCommand, logitsCommand } from './generate.js';
import { infoCommand } from './info.js';
import { benchCommand } from './bench.js';
import { chatCommand } from './chat.js';
import { demoCommand } from './demo.js';
import { finetuneCommand } from './finetune.js';
import { convertCommand, fidelityCommand } from './snn.js';
import { spikesCommand } from './spikes.js';
import { testCommand } from './test.js';

export const COMMANDS: readonly Command[] = [demoCommand, generateCommand, logitsCommand, convertCommand, finetuneCommand, fidelityCommand, chatCommand, testCommand, benchCommand, spikesCommand, infoCommand];

function usage(): string {
  const lines = ['usage: spikelm <command> [flags]', '', 'commands:'];
  for (const c of COMMANDS) {
    lines.push(`  ${c.name.padEnd(10)} ${c.summary}`);
    for (const s of c.subcommands ?? []) lines.push(`  ${`${c.name} ${s.name}`.padEnd(10)} ${s.summary}`);
  }
  lines.push('', 'run `spikelm <command> --help` for its flags');
  return lines.join('\n');
}

export async function main(argv: readonly string[], io: CliIO = processIO): Promise<number> {
  const [name, ...args0] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    io.out(`${usage()}\n`);
    return name ? 0 : 2;
  }
  let command = COMMANDS.find((c) => c.name === name);
  if (!command) {
    io.err(`spikelm: error: unknown command "${name}"\n${usage()}\n`);
    return 2;
  }
  let rest = args0;
  const sub = command.subcommands?.find((c) => c.name === rest[0]);
  if (sub) {
    command = { ...sub, name: `${command.name} ${sub.name}` };
    rest = rest.slice(1);
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    io.out(`${helpText(command.name, command.summary, command.flags)}\n`);
    return 0;
  }
  try {
    const args = parseArgs(rest, command.flags, command.name);
    if (args.positional.length > 0 && !command.positional) throw new ArgumentError(`${command.name}: unexpected argument "${args.positional[0]}"`);
    return await command.run(args, io);
  } catch (err) {
    const e = err as Error;
    const message = e instanceof SpikelmError ? e.message : `${e.name ?? 'Error'}: ${e.message ?? String(err)}`;
    io.err(`spikelm: error: ${message.split('\n')[0]}\n`);
    if (process.env.SPIKELM_DEBUG) io.err(`${e.stack ?? ''}\n`);
    return err instanceof ArgumentError ? 2 : 1;
  }
}
