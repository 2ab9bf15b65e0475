// Turns generated token ids into text as they arrive: whole UTF-8 characters only, and never a piece of text that
// could turn out to be the start of a stop string.

interface TokenSource {
  tokenBytes(token: number): Buffer;
}

export class TokenTextStream {
  private readonly decoder = new TextDecoder("utf-8", { fatal: false });
  private pending = "";
  private emitted = "";
  private done = false;

  constructor(
    private readonly source: TokenSource,
    private readonly stops: readonly string[],
  ) {}

  /** All text released so far. */
  get text(): string {
    return this.emitted;
  }

  /** Adds one token; returns the text that is now safe to show, and whether a stop string was reached. */
  push(token: number): { text: string; stopped: boolean } {
    if (this.done) return { text: "", stopped: true };
    this.pending += this.decoder.decode(this.source.tokenBytes(token), { stream: true });
    let cut = -1;
    for (const s of this.stops) {
      if (!s) continue;
      const i = this.pending.indexOf(s);
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut >= 0) {
      this.done = true;
      return { text: this.release(cut), stopped: true };
    }
    return { text: this.release(this.pending.length - this.heldBack()), stopped: false };
  }

  /** Releases what is held back (the end of generation without a stop string). */
  flush(): string {
    if (this.done) return "";
    this.pending += this.decoder.decode();
    return this.release(this.pending.length);
  }

  /** Length of the longest suffix of pending text that is a proper prefix of a stop string. */
  private heldBack(): number {
    let hold = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, this.pending.length); k > hold; k--) {
        if (this.pending.endsWith(s.slice(0, k))) {
          hold = k;
          break;
        }
      }
    }
    return hold;
  }

  private release(n: number): string {
    const out = this.pending.slice(0, n);
    this.pending = this.pending.slice(n);
    if (this.done) this.pending = "";
    this.emitted += out;
    return out;
  }
}
