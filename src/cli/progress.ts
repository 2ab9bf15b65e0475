import { formatBytes } from "./format.js";

/**
 * A one-line progress display on stderr for work outside the TUI (downloads, document loading): redrawn in place on a
 * terminal, a line every 10% otherwise so logs stay short.
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
  }
}
