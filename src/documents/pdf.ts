import { getResolvedPDFJS } from "unpdf";
import { DocumentError } from "./errors.js";

export interface PdfProgress {
  page: number;
  pages: number;
}

export interface PdfText {
  /** Pages in order, each preceded by a `[page N of M]` marker line. */
  text: string;
  pages: number;
}

/** pdf.js's VerbosityLevel.ERRORS: its warnings ("Indexing all PDF objects", …) must stay off the console. */
const PDFJS_ERRORS_ONLY = 0;

/** A PDF header may sit after some junk, but pdf.js (like Acrobat) only looks within the first 1024 bytes. */
export function isPdfHeader(head: Uint8Array): boolean {
  const limit = Math.min(head.length, 1024) - 5;
  for (let i = 0; i <= limit; i++) {
    if (
      head[i] === 0x25 && // %
      head[i + 1] === 0x50 && // P
      head[i + 2] === 0x44 && // D
      head[i + 3] === 0x46 && // F
      head[i + 4] === 0x2d // -
    ) {
      return true;
    }
  }
  return false;
}

export function pageMarker(page: number, pages: number): string {
  return `[page ${page} of ${pages}]`;
}

/**
 * Extracts the text layer of a PDF page by page, in order. Every pdf.js failure becomes a DocumentError naming
 * `displayPath`; errors thrown by `onProgress` pass through unchanged.
 */
export async function extractPdfText(data: Uint8Array, displayPath: string, onProgress?: (p: PdfProgress) => void): Promise<PdfText> {
  let getDocument;
  try {
    ({ getDocument } = await getResolvedPDFJS());
  } catch (e) {
    // A broken installation, not a broken document, but the user still gets one line rather than a stack.
    const reason = (e instanceof Error ? e.message : String(e)).split("\n")[0];
    throw new DocumentError(displayPath, "unreadable", `cannot read PDFs: the PDF engine failed to load (${reason})`);
  }
  // pdf.js takes ownership of (and may detach) the buffer it is given.
  const task = getDocument({
    data: data.slice(),
    isEvalSupported: false,
    useSystemFonts: true,
    disableFontFace: true,
    verbosity: PDFJS_ERRORS_ONLY,
  });
  try {
    let pdf;
    try {
      pdf = await task.promise;
    } catch (e) {
      throw pdfError(displayPath, e);
    }
    const pages = pdf.numPages;
    if (pages === 0) throw new DocumentError(displayPath, "no_text", "the PDF has no pages");
    const parts: string[] = [];
    let pagesWithText = 0;
    for (let n = 1; n <= pages; n++) {
      let pageText: string;
      try {
        const page = await pdf.getPage(n);
        const content = await page.getTextContent();
        pageText = assemblePageText(content.items);
        page.cleanup();
      } catch (e) {
        throw pdfError(displayPath, e, n);
      }
      if (pageText.length > 0) pagesWithText++;
      parts.push(pageText.length > 0 ? `${pageMarker(n, pages)}\n${pageText}` : pageMarker(n, pages));
      onProgress?.({ page: n, pages });
    }
    if (pagesWithText === 0) {
      const count = `${pages} ${pages === 1 ? "page" : "pages"}`;
      const hint = "run OCR first, e.g. ocrmypdf in.pdf out.pdf";
      throw new DocumentError(displayPath, "no_text", `the PDF has no text layer (image-only, ${count}); ${hint}`);
    }
    return { text: parts.join("\n\n") + "\n", pages };
  } finally {
    // Tearing down can itself reject (a half-parsed document); nothing useful can be done with that.
    await task.destroy().catch(() => undefined);
  }
}

function pdfError(displayPath: string, e: unknown, page?: number): DocumentError {
  if (e instanceof DocumentError) return e;
  const name = (e as { name?: unknown } | null)?.name;
  if (name === "PasswordException") {
    const hint = "decrypt it first, e.g. qpdf --password=PASSWORD --decrypt in.pdf out.pdf";
    return new DocumentError(displayPath, "encrypted", `the PDF is encrypted (password-protected); ${hint}`);
  }
  const raw = e instanceof Error ? e.message : String(e);
  const reason = raw.split("\n")[0].replace(/\.$/, "").trim() || "unknown error";
  const where = page === undefined ? "" : ` at page ${page}`;
  return new DocumentError(displayPath, "unreadable", `the PDF is damaged and cannot be read${where} (${reason})`);
}

interface PositionedText {
  str: string;
  transform: number[];
  height: number;
  hasEOL: boolean;
}

function isPositionedText(item: unknown): item is PositionedText {
  return typeof item === "object" && item !== null && typeof (item as { str?: unknown }).str === "string";
}

/**
 * Joins a page's text items into lines. pdf.js marks most line ends itself (`hasEOL`); a jump in the baseline it did
 * not mark also starts a new line, and a vertical gap clearly wider than the page's line spacing starts a new
 * paragraph (a blank line), so that paragraph-aware splitting works on PDF text too.
 */
export function assemblePageText(items: readonly unknown[]): string {
  let out = "";
  let prevY: number | undefined;
  let prevHeight = 0;
  let lineStep = Infinity;
  for (const item of items) {
    if (!isPositionedText(item)) continue;
    const hasInk = item.str.trim().length > 0;
    if (hasInk) {
      const y = item.transform[5] ?? 0;
      const height = item.height > 0 ? item.height : Math.hypot(item.transform[2] ?? 0, item.transform[3] ?? 0);
      if (prevY !== undefined) {
        const dy = prevY - y;
        const size = Math.max(height, prevHeight, 1);
        if (Math.abs(dy) > size * 0.5) {
          if (!out.endsWith("\n")) out += "\n";
          if (dy > 0) {
            const paragraphGap = Number.isFinite(lineStep) ? dy > lineStep * 1.4 : dy > size * 1.8;
            if (paragraphGap && !out.endsWith("\n\n")) out += "\n";
            // Sub- and superscripts shift the baseline a little; only whole-line advances define the spacing.
            if (dy >= size * 0.8) lineStep = Math.min(lineStep, dy);
          }
        }
      }
      prevY = y;
      prevHeight = height;
    }
    out += item.str;
    if (item.hasEOL && !out.endsWith("\n")) out += "\n";
  }
  return out
    .replace(/[^\S\n]+/g, " ")
    .replace(/ ?\n ?/g, "\n")
    .replace(/\n{3,}/g, "\n\n")
    .trim();
}
