import { formatBytes } from "./format.js";

/**
 * The one progress display for long work outside the TUI (downloads, document loading, calibration stages, batch
 * runs): a line on stderr, redrawn in place on a terminal, a line every 10% otherwise so logs stay short.
 */
export class ProgressLine {
  private readonly tty = Boolean(process.stderr.isTTY);
  private readonly start = Date.now();
  private lastDecile = -1;
  private drawn = false;

  constructor(
    private readonly label: string,
    private readonly unit: "bytes" | "count" = "bytes",
  ) {}

  update(done: number, total: number): void {
    const frac = total > 0 ? Math.min(1, done / total) : 0;
    const fmt = (n: number) => (this.unit === "bytes" ? formatBytes(n) : String(n));
    const elapsed = (Date.now() - this.start) / 1000;
    const eta = frac > 0.01 && frac < 1 ? ` ETA ${Math.max(0, Math.round((elapsed * (1 - frac)) / frac))}s` : "";
    const text = `${this.label}: ${(frac * 100).toFixed(0).padStart(3)}% ${fmt(done)} / ${total > 0 ? fmt(total) : "?"}${eta}`;
    if (this.tty) {
      process.stderr.write(`\r\x1b[2K${text}`);
      this.drawn = true;
    } else {
      const decile = Math.floor(frac * 10);
      if (decile !== this.lastDecile) {
        this.lastDecile = decile;
        process.stderr.write(text + "\n");
      }
    }
  }

  done(): void {
    if (this.tty && this.drawn) process.stderr.write("\r\x1b[2K");
    this.drawn = false;
  }
}

/** Work in phases: a new label ends the previous line and starts its own; notes go between lines. */
export class PhasedProgress {
  private line: ProgressLine | null = null;
  private label = "";

  /** enabled false: draw nothing (scripts that want a clean stderr). */
  constructor(private readonly enabled = true) {}

  update(label: string, done: number, total: number, unit: "bytes" | "count" = "count"): void {
    if (!this.enabled) return;
    if (label !== this.label || !this.line) {
      this.done();
      this.line = new ProgressLine(label, unit);
      this.label = label;
    }
    this.line.update(done, total);
  }

  note(text: string): void {
    this.done();
    process.stderr.write(`${text}\n`);
  }

  done(): void {
    this.line?.done();
    this.line = null;
    this.label = "";
  }
}
