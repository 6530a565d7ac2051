/**
 * A progress bar on stderr: redrawn in place on a terminal, a line per 25% otherwise (logs, CI).
 */
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
