/**
 * A progress bar on stderr: redrawn in place on a terminal, a line per 25% otherwise (logs, CI).
 */
import type { BenchEvents } from '../bench/shards.js';
import type { CliIO } from './command.js';

export class ProgressBar {
  private lastQuarter = -1;
  private readonly start = performance.now();

  constructor(private readonly io: CliIO, private readonly label: string, private readonly tty = Boolean(process.stderr.isTTY)) {}

  /** `detail` (e.g. the current loss) is shown after the counts. */
  update(done: number, total: number, detail = ''): void {
    const frac = total > 0 ? Math.min(1, done / total) : 1;
    const secs = ((performance.now() - this.start) / 1000).toFixed(1);
    if (this.tty) {
      const width = 28, filled = Math.round(frac * width);
      this.io.err(`\r${this.label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${Math.round(frac * 100)}% (${done}/${total}, ${secs}s)${detail ? ` ${detail}` : ''}\x1b[K`);
      if (frac === 1) this.io.err('\n');
      return;
    }
    const quarter = Math.floor(frac * 4);
    if (quarter > this.lastQuarter) {
      this.lastQuarter = quarter;
      this.io.err(`${this.label}: ${Math.round(frac * 100)}% (${done}/${total}, ${secs}s)${detail ? ` ${detail}` : ''}\n`);
    }
  }
}

/**
 * Progress of a sweep by unit (one conversion each): which unit runs, how many are done and remain,
 * and an ETA from the units' predicted costs. Redrawn in place on a terminal; plain lines otherwise.
 */
export class UnitProgress {
  constructor(private readonly io: CliIO, private readonly label: string, private readonly tty = Boolean(process.stderr.isTTY)) {}

  private line(text: string, final = false): void {
    if (this.tty) this.io.err(`\r${this.label}: ${text}\x1b[K${final ? '\n' : ''}`);
    else this.io.err(`${this.label}: ${text}\n`);
  }

  events(): BenchEvents {
    return {
      onSkip: (skipped) => this.line(`${skipped.length} unit(s) already complete, skipped: ${skipped.map((u) => u.id).join(', ')}`, true),
      onUnitStart: (unit, done, total, eta) => this.line(`unit ${done + 1}/${total} ${unit.id} (T ${unit.timesteps.join(',')}): ${done} done, ${total - done} remaining${Number.isFinite(eta) ? `, ETA ${formatSeconds(eta)}` : ''}`),
      onUnitDone: (unit, seconds, done, total) => this.line(`unit ${done}/${total} ${unit.id} done in ${formatSeconds(seconds)}; ${total - done} remaining`, done === total),
    };
  }
}

function formatSeconds(s: number): string {
  return s < 90 ? `${s.toFixed(1)} s` : s < 5400 ? `${(s / 60).toFixed(1)} min` : `${(s / 3600).toFixed(1)} h`;
}
