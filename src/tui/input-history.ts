// Earlier inputs, recalled with ↑/↓ like a shell: the line being typed is kept as a draft while browsing.

export class InputHistory {
  private readonly entries: string[] = [];
  /** entries.length = not browsing (at the draft). */
  private index = 0;
  private draft = "";

  constructor(
    initial: readonly string[] = [],
    private readonly limit = 500,
  ) {
    for (const e of initial) this.push(e);
  }

  get size(): number {
    return this.entries.length;
  }

  /** Remembers a submitted line (not blank, not a repeat of the last one) and stops browsing. */
  push(entry: string): void {
    if (entry.trim() !== "" && this.entries.at(-1) !== entry) {
      this.entries.push(entry);
      if (this.entries.length > this.limit) this.entries.shift();
    }
    this.index = this.entries.length;
    this.draft = "";
  }

  /** The entry before the one shown (`current` is what the line holds now), or undefined at the oldest. */
  older(current: string): string | undefined {
    if (this.index === 0) return undefined;
    if (this.index === this.entries.length) this.draft = current;
    this.index--;
    return this.entries[this.index];
  }

  /** The entry after the one shown, the draft after the newest, or undefined when not browsing. */
  newer(): string | undefined {
    if (this.index >= this.entries.length) return undefined;
    this.index++;
    return this.index === this.entries.length ? this.draft : this.entries[this.index];
  }
}
