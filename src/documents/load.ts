import { open, stat, type FileHandle } from "node:fs/promises";
import { basename, extname } from "node:path";
import { DocumentError, fsError } from "./errors.js";
import { extractPdfText, isPdfHeader, type PdfProgress } from "./pdf.js";
import { countChars, decodeText, looksBinary, normalizeLineEndings } from "./text.js";

export type DocumentKind = "pdf" | "text" | "markdown";

export interface LoadedDocument {
  /** The path as the caller gave it. */
  path: string;
  /** The file name, for display. */
  name: string;
  kind: DocumentKind;
  /** Text for the model: PDF pages each preceded by `[page N of M]`; text and Markdown with LF line endings. */
  text: string;
  /** PDF page count. */
  pages?: number;
  /** Length of `text` in Unicode code points. */
  chars: number;
}

export interface LoadOptions {
  /** Called after each PDF page is extracted. */
  onProgress?: (p: PdfProgress) => void;
}

/** Extensions that folders and globs pick up, and that loadDocument reads without sniffing for binary content. */
export const SUPPORTED_EXTENSIONS: readonly string[] = [".pdf", ".txt", ".md", ".markdown"];

const TEXT_EXTENSIONS = new Set([".txt"]);
const MARKDOWN_EXTENSIONS = new Set([".md", ".markdown"]);
const SNIFF_BYTES = 8192;

/**
 * Reads a PDF, plain-text or Markdown file as text for an LLM context. The kind comes from the content first (a file
 * that starts like a PDF is a PDF, whatever its name), then the extension; a file with another extension is read as
 * text when it is UTF-8 without NUL bytes. Every failure is a DocumentError with one message naming the file.
 */
export async function loadDocument(path: string, opts: LoadOptions = {}): Promise<LoadedDocument> {
  const name = basename(path);
  const ext = extname(path).toLowerCase();

  let size: number;
  try {
    const st = await stat(path);
    if (st.isDirectory()) throw new DocumentError(path, "unsupported", "is a folder, not a document");
    if (!st.isFile()) throw new DocumentError(path, "unsupported", "is not a regular file");
    size = st.size;
  } catch (e) {
    throw e instanceof DocumentError ? e : fsError(path, e);
  }
  if (size === 0) throw new DocumentError(path, "empty", "the file is empty");

  const bytes = await readHeadThenRest(path, ext);

  if (isPdfHeader(bytes.subarray(0, 1024))) {
    const pdf = await extractPdfText(bytes, path, opts.onProgress);
    return { path, name, kind: "pdf", text: pdf.text, pages: pdf.pages, chars: countChars(pdf.text) };
  }
  if (ext === ".pdf") {
    throw new DocumentError(path, "not_pdf", "not a PDF file (it does not start with %PDF-)");
  }

  const kind: DocumentKind = MARKDOWN_EXTENSIONS.has(ext) ? "markdown" : "text";
  const known = kind === "markdown" || TEXT_EXTENSIONS.has(ext);
  const decoded = decodeText(bytes, known);
  if (!decoded.ok) {
    throw unsupported(path, decoded.reason === "binary" ? "binary content" : "not UTF-8 text");
  }
  const text = normalizeLineEndings(decoded.text);
  if (text.trim().length === 0) {
    throw new DocumentError(path, "empty", "the file contains only whitespace, no text");
  }
  return { path, name, kind, text, chars: countChars(text) };
}

function unsupported(path: string, why: string): DocumentError {
  const detail = `not a supported document (${why}; supported: PDF, plain text, Markdown)`;
  return new DocumentError(path, "unsupported", detail);
}

/**
 * Reads the first bytes and decides from them whether the rest is worth reading: a large binary file with an unknown
 * extension (a video, an archive) is refused without loading it into memory.
 */
async function readHeadThenRest(path: string, ext: string): Promise<Uint8Array> {
  let handle;
  try {
    handle = await open(path, "r");
  } catch (e) {
    throw fsError(path, e);
  }
  try {
    const { size } = await handle.stat();
    const head = new Uint8Array(Math.min(size, SNIFF_BYTES));
    const headLength = await readFully(handle, head, 0);
    if (headLength < head.length) return head.subarray(0, headLength);
    const sniffable = !SUPPORTED_EXTENSIONS.includes(ext) && !isPdfHeader(head.subarray(0, 1024));
    if (sniffable && looksBinary(head)) throw unsupported(path, "binary content");
    if (size <= head.length) return head;
    const all = new Uint8Array(size);
    all.set(head, 0);
    return all.subarray(0, await readFully(handle, all, head.length));
  } catch (e) {
    throw e instanceof DocumentError ? e : fsError(path, e);
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/** Fills `into` from byte `from` on and returns how far it got (less than its length if the file shrank). */
async function readFully(handle: FileHandle, into: Uint8Array, from: number): Promise<number> {
  let offset = from;
  while (offset < into.length) {
    const { bytesRead } = await handle.read(into, offset, into.length - offset, offset);
    if (bytesRead === 0) break;
    offset += bytesRead;
  }
  return offset;
}
