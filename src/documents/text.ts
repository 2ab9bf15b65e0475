/** Decoding and normalising plain-text documents. */

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** How a byte buffer decodes as text, or why it does not. */
export type DecodedText = { ok: true; text: string } | { ok: false; reason: "binary" | "not_utf8" };

/** True when the bytes carry a UTF-16 byte-order mark (Windows "Unicode" text files are full of NUL bytes). */
function utf16Encoding(bytes: Uint8Array): "utf-16le" | "utf-16be" | undefined {
  if (bytes.length >= 2 && bytes[0] === 0xff && bytes[1] === 0xfe) return "utf-16le";
  if (bytes.length >= 2 && bytes[0] === 0xfe && bytes[1] === 0xff) return "utf-16be";
  return undefined;
}

/** True when the bytes look binary: a NUL byte that a UTF-16 byte-order mark does not explain. */
export function looksBinary(bytes: Uint8Array): boolean {
  return utf16Encoding(bytes) === undefined && bytes.includes(0);
}

/**
 * Decodes UTF-8 (or BOM-marked UTF-16) strictly. With `legacyFallback`, bytes that are not valid UTF-8 are read as
 * Windows-1252, the usual encoding of old .txt files, rather than refused.
 */
export function decodeText(bytes: Uint8Array, legacyFallback: boolean): DecodedText {
  const utf16 = utf16Encoding(bytes);
  if (utf16) return { ok: true, text: stripBom(new TextDecoder(utf16).decode(bytes)) };
  if (bytes.includes(0)) return { ok: false, reason: "binary" };
  try {
    return { ok: true, text: stripBom(utf8.decode(bytes)) };
  } catch {
    if (!legacyFallback) return { ok: false, reason: "not_utf8" };
    return { ok: true, text: decodeWindows1252(bytes) };
  }
}

/** Windows-1252 differs from Latin-1 only in 0x80-0x9F (curly quotes, dashes, €); Node reads that label as Latin-1. */
const CP1252_HIGH =
  "\u20ac\u0081\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\u008d\u017d\u008f" +
  "\u0090\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\u009d\u017e\u0178";

function decodeWindows1252(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    const codes = Array.from(bytes.subarray(i, i + 8192), (b) => (b >= 0x80 && b <= 0x9f ? CP1252_HIGH.charCodeAt(b - 0x80) : b));
    out += String.fromCharCode(...codes);
  }
  return out;
}

export function stripBom(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/** CRLF and lone CR (old Mac files) become LF; nothing else changes. */
export function normalizeLineEndings(text: string): string {
  return text.replace(/\r\n?/g, "\n");
}

/** Number of Unicode code points (what a person would call characters, near enough), without building an array. */
export function countChars(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0xdc00 || c > 0xdfff) n++;
  }
  return n;
}
