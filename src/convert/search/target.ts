/**
 * A fidelity target: what the user asks of a conversion against its ANN, measured per position of
 * a text. `top1` is the fraction of positions whose most likely next token agrees; `kl` the mean
 * KL(ANN ‖ SNN) in nats. A key left out is no constraint (`kl=1e-3` alone is a KL-only target).
 */
import { ArgumentError } from '../../errors.js';

export interface FidelityTarget {
  /** Least top-1 agreement, in [0, 1] (0: no constraint). */
  readonly top1: number;
  /** Largest mean KL(ANN ‖ SNN) (Infinity: no constraint). */
  readonly kl: number;
}

export const DEFAULT_TARGET: FidelityTarget = { top1: 0.99, kl: 1e-3 };

/** `top1=0.99,kl=1e-3` (either key may be left out; `top1=99%` is accepted too). */
export function parseTarget(text: string, flag = '--target'): FidelityTarget {
  const parts = text.split(',').map((p) => p.trim()).filter((p) => p.length > 0);
  if (parts.length === 0) throw new ArgumentError(`${flag} must name top1 and/or kl, e.g. top1=0.99,kl=1e-3; got "${text}"`);
  let top1 = 0, kl = Infinity;
  const seen = new Set<string>();
  for (const p of parts) {
    const m = /^(top1|kl)\s*=\s*([^=]+)$/.exec(p);
    if (!m) throw new ArgumentError(`${flag}: "${p}" is not top1=VALUE or kl=VALUE (e.g. top1=0.99,kl=1e-3)`);
    const key = m[1]!;
    if (seen.has(key)) throw new ArgumentError(`${flag}: ${key} is given twice`);
    seen.add(key);
    const raw = m[2]!.trim();
    const value = raw.endsWith('%') ? Number(raw.slice(0, -1)) / 100 : Number(raw);
    if (key === 'top1') {
      if (!(value >= 0 && value <= 1)) throw new ArgumentError(`${flag}: top1 must be a fraction in [0, 1] (or a percentage), got "${raw}"`);
      top1 = value;
    } else {
      if (!(value > 0) || !Number.isFinite(value)) throw new ArgumentError(`${flag}: kl must be a positive number, got "${raw}"`);
      kl = value;
    }
  }
  return { top1, kl };
}

export function formatTarget(t: FidelityTarget): string {
  return [t.top1 > 0 ? `top1=${t.top1}` : '', Number.isFinite(t.kl) ? `kl=${t.kl}` : ''].filter(Boolean).join(',') || 'none';
}

/** Wilson score interval of a proportion (z = 1.96: 95%). */
export function wilsonInterval(successes: number, n: number, z = 1.959964): [number, number] {
  if (n <= 0) return [0, 1];
  const p = successes / n, z2 = z * z;
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = (z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))) / (1 + z2 / n);
  return [Math.max(0, centre - half), Math.min(1, centre + half)];
}
