import { mkdtemp, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deflateSync } from "node:zlib";
import { randomBytes } from "node:crypto";
import { PDFDocument, StandardFonts, rgb } from "pdf-lib";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { DocumentError, loadDocument, type DocumentErrorCode } from "./index.js";

const FIXTURES = new URL("../../test/fixtures/documents/", import.meta.url).pathname;
const CORPORA = new URL("../../../shared/corpora/", import.meta.url).pathname;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "kvzap-documents-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A real text PDF: one block of lines per page, drawn with a standard font. */
async function textPdf(pages: string[][]): Promise<Uint8Array> {
  const doc = await PDFDocument.create();
  const font = await doc.embedFont(StandardFonts.Helvetica);
  for (const lines of pages) {
    const page = doc.addPage([612, 792]);
    lines.forEach((line, i) => page.drawText(line, { x: 72, y: 700 - i * 16, size: 12, font }));
  }
  return doc.save();
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf: Buffer): number {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
/** A real RGB PNG (a gradient), encoded by hand so the test needs no image library. */
function png(width: number, height: number): Uint8Array {
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  const raw = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    const row = y * (width * 3 + 1);
    for (let x = 0; x < width; x++) {
      raw[row + 1 + x * 3] = (x * 255) / width;
      raw[row + 2 + x * 3] = (y * 255) / height;
      raw[row + 3 + x * 3] = 128;
    }
  }
  const sig = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([sig, chunk("IHDR", ihdr), chunk("IDAT", deflateSync(raw)), chunk("IEND", Buffer.alloc(0))]);
}

/** Like a scan: every page is pictures and shapes, no text. */
async function imageOnlyPdf(pages: number): Promise<Uint8Array> {
  const doc = await PDFDocument.create();
  const image = await doc.embedPng(png(64, 48));
  for (let i = 0; i < pages; i++) {
    const page = doc.addPage([612, 792]);
    page.drawRectangle({ x: 50, y: 50, width: 200, height: 100, color: rgb(0.8, 0.1, 0.1) });
    page.drawImage(image, { x: 72, y: 300, width: 400, height: 300 });
  }
  return doc.save();
}

async function write(name: string, data: string | Uint8Array): Promise<string> {
  const p = join(dir, name);
  await writeFile(p, data);
  return p;
}

/** Runs loadDocument expecting a DocumentError; returns it for assertions. */
async function failure(path: string): Promise<DocumentError> {
  try {
    await loadDocument(path);
  } catch (e) {
    expect(e).toBeInstanceOf(DocumentError);
    return e as DocumentError;
  }
  throw new Error(`expected ${path} to fail`);
}

function expectOneCleanLine(e: DocumentError, path: string, code: DocumentErrorCode): void {
  expect(e.code).toBe(code);
  expect(e.path).toBe(path);
  expect(e.message.startsWith(`${path}: `)).toBe(true);
  expect(e.message).not.toContain("\n");
  expect(e.message).not.toMatch(/\bat .*:\d+:\d+/); // no stack frames folded into the message
}

describe("loadDocument: PDF", () => {
  it("extracts every page in order, each after its marker, and reports progress per page", async () => {
    const path = await write(
      "three-pages.pdf",
      await textPdf([
        ["Alpha introduction of the quarterly report.", "Revenue grew in the north region."],
        ["Bravo section about the zebra migration.", "Costs fell by eleven percent."],
        ["Charlie conclusion with recommendations.", "Hire two more engineers."],
      ]),
    );
    const progress: Array<{ page: number; pages: number }> = [];
    const doc = await loadDocument(path, { onProgress: (p) => progress.push(p) });

    expect(doc).toMatchObject({ path, name: "three-pages.pdf", kind: "pdf", pages: 3 });
    expect(progress).toEqual([
      { page: 1, pages: 3 },
      { page: 2, pages: 3 },
      { page: 3, pages: 3 },
    ]);
    const m1 = doc.text.indexOf("[page 1 of 3]");
    const m2 = doc.text.indexOf("[page 2 of 3]");
    const m3 = doc.text.indexOf("[page 3 of 3]");
    expect(m1).toBe(0);
    expect(m2).toBeGreaterThan(m1);
    expect(m3).toBeGreaterThan(m2);
    const page1 = doc.text.slice(m1, m2);
    const page2 = doc.text.slice(m2, m3);
    const page3 = doc.text.slice(m3);
    expect(page1).toContain("Alpha introduction of the quarterly report.\nRevenue grew in the north region.");
    expect(page2).toContain("Bravo section about the zebra migration.\nCosts fell by eleven percent.");
    expect(page3).toContain("Charlie conclusion with recommendations.\nHire two more engineers.");
    expect(page1).not.toContain("zebra");
    expect(page3).not.toContain("zebra");
    // Each marker is a line of its own.
    expect(doc.text).toMatch(/^\[page 2 of 3\]$/m);
    expect(doc.chars).toBe(doc.text.length);
  });

  it("reads the committed report.pdf fixture: three pages of Sherlock Holmes with paragraphs", async () => {
    const path = join(FIXTURES, "report.pdf");
    const pages: number[] = [];
    const doc = await loadDocument(path, { onProgress: (p) => pages.push(p.page) });
    expect(doc.kind).toBe("pdf");
    expect(doc.pages).toBe(3);
    expect(pages).toEqual([1, 2, 3]);
    const [p1, p2, p3] = doc.text.split(/^\[page \d of 3\]$/m).slice(1);
    expect(p1).toContain("A Scandal in Bohemia");
    expect(p1).toContain("To Sherlock Holmes she is always _the_ woman.");
    expect(p1).toContain("Irene Adler");
    expect(p2).toContain("word spoken, but with a kindly eye, he waved me to an armchair");
    expect(p2).toContain("“Well, some hundreds of times.”");
    expect(p3).toContain("“Then how many are there?”");
    expect(p3).toContain("triumphant cloud from his cigarette.");
    // Vertical gaps between paragraphs come out as blank lines.
    expect(p1).toMatch(/memory\.\n\nI had seen little of Holmes lately\./);
  });

  it("refuses an image-only PDF with a page count and an OCR hint", async () => {
    const path = await write("scan.pdf", await imageOnlyPdf(3));
    const e = await failure(path);
    expectOneCleanLine(e, path, "no_text");
    expect(e.message).toBe(`${path}: the PDF has no text layer (image-only, 3 pages); run OCR first, e.g. ocrmypdf in.pdf out.pdf`);
    const one = await write("scan1.pdf", await imageOnlyPdf(1));
    expect((await failure(one)).message).toContain("(image-only, 1 page)");
  });

  it("refuses an encrypted PDF with a decryption hint", async () => {
    const path = join(FIXTURES, "encrypted.pdf");
    const e = await failure(path);
    expectOneCleanLine(e, path, "encrypted");
    expect(e.message).toBe(`${path}: the PDF is encrypted (password-protected); decrypt it first, e.g. qpdf --password=PASSWORD --decrypt in.pdf out.pdf`);
  });

  it("reads a PDF that is encrypted only with an owner password (opens without one)", async () => {
    const doc = await loadDocument(join(FIXTURES, "encrypted-owner-only.pdf"));
    expect(doc.pages).toBe(1);
    expect(doc.text).toBe("[page 1 of 1]\nThis confidential memo is locked with a password.\n");
  });

  it("refuses an empty file named .pdf", async () => {
    const path = await write("empty.pdf", "");
    const e = await failure(path);
    expectOneCleanLine(e, path, "empty");
    expect(e.message).toBe(`${path}: the file is empty`);
  });

  it("refuses random bytes named .pdf as not a PDF", async () => {
    const bytes = randomBytes(4096);
    bytes.write("GARBAGE!", 0); // make sure the header is not %PDF- by chance
    const path = await write("random.pdf", bytes);
    const e = await failure(path);
    expectOneCleanLine(e, path, "not_pdf");
    expect(e.message).toBe(`${path}: not a PDF file (it does not start with %PDF-)`);
  });

  it("refuses a damaged PDF (right header, broken body) without console output or unhandled rejections", async () => {
    const good = await textPdf([["Some words that will be cut off."]]);
    const truncated = await write("truncated.pdf", good.slice(0, Math.floor(good.length * 0.6)));
    const garbage = await write("garbage.pdf", Buffer.concat([Buffer.from("%PDF-1.7\n"), randomBytes(3000)]));

    const rejections: unknown[] = [];
    const onRejection = (r: unknown) => rejections.push(r);
    process.on("unhandledRejection", onRejection);
    const spies = (["log", "warn", "error", "info", "debug"] as const).map((m) => vi.spyOn(console, m));
    try {
      for (const path of [truncated, garbage]) {
        const e = await failure(path);
        expectOneCleanLine(e, path, "unreadable");
        expect(e.message).toBe(`${path}: the PDF is damaged and cannot be read (Invalid PDF structure)`);
      }
      // Also the other failures go through pdf.js quietly.
      await failure(join(FIXTURES, "encrypted.pdf"));
      await failure(await write("quiet-scan.pdf", await imageOnlyPdf(2)));
      await new Promise((r) => setTimeout(r, 50)); // let any stray rejection surface
      for (const spy of spies) expect(spy).not.toHaveBeenCalled();
      expect(rejections).toEqual([]);
    } finally {
      for (const spy of spies) spy.mockRestore();
      process.off("unhandledRejection", onRejection);
    }
  });

  it("keeps the marker of a page without text when other pages have text", async () => {
    const doc = await PDFDocument.create();
    const font = await doc.embedFont(StandardFonts.Helvetica);
    doc.addPage([612, 792]).drawText("Text before the photograph.", { x: 72, y: 700, size: 12, font });
    doc.addPage([612, 792]).drawImage(await doc.embedPng(png(32, 32)), { x: 72, y: 300, width: 300, height: 300 });
    doc.addPage([612, 792]).drawText("Text after the photograph.", { x: 72, y: 700, size: 12, font });
    const path = await write("mixed.pdf", await doc.save());
    expect((await loadDocument(path)).text).toBe("[page 1 of 3]\nText before the photograph.\n\n[page 2 of 3]\n\n[page 3 of 3]\nText after the photograph.\n");
  });

  it("lets an error thrown by the progress callback through unchanged", async () => {
    const path = join(FIXTURES, "report.pdf");
    const stop = new Error("cancelled by the user");
    await expect(
      loadDocument(path, {
        onProgress: (p) => {
          if (p.page === 2) throw stop;
        },
      }),
    ).rejects.toBe(stop);
  });

  it("recognises a PDF by its content whatever its extension", async () => {
    const path = await write("actually-a-pdf.txt", await textPdf([["Content sniffing beats the file name."]]));
    const doc = await loadDocument(path);
    expect(doc.kind).toBe("pdf");
    expect(doc.text).toBe("[page 1 of 1]\nContent sniffing beats the file name.\n");
  });
});

describe("loadDocument: text and Markdown", () => {
  it("reads UTF-8 text and strips the byte-order mark (Sherlock Holmes corpus)", async () => {
    const path = join(CORPORA, "gutenberg-sherlock-holmes.txt");
    const raw = await readFile(path, "utf8");
    expect(raw.charCodeAt(0)).toBe(0xfeff); // the corpus file really has a BOM
    const doc = await loadDocument(path);
    expect(doc.kind).toBe("text");
    expect(doc.name).toBe("gutenberg-sherlock-holmes.txt");
    expect(doc.pages).toBeUndefined();
    expect(doc.text.startsWith("The Project Gutenberg eBook of The Adventures of Sherlock Holmes")).toBe(true);
    expect(doc.text).toContain("To Sherlock Holmes she is always _the_ woman.");
    expect(doc.text).toBe(raw.slice(1).replace(/\r\n/g, "\n"));
    expect(doc.chars).toBe([...doc.text].length);
  });

  it("normalises CRLF line endings (WikiText corpus)", async () => {
    const path = join(CORPORA, "wikitext-2-test.txt");
    const raw = await readFile(path, "utf8");
    expect(raw).toContain("\r\n");
    const doc = await loadDocument(path);
    expect(doc.text).not.toContain("\r");
    expect(doc.text.split("\n").length).toBe(raw.split("\r\n").length);
    expect(doc.text).toBe(raw.replace(/\r\n/g, "\n"));
  });

  it("keeps Markdown as written apart from line endings", async () => {
    const body = (await readFile(join(CORPORA, "debian-devils-dictionary.txt"), "utf8")).slice(0, 3000);
    const md = `# The Devil's Dictionary\r\n\r\n> excerpt\r\n\r\n- **bold** item\r\n- \`code\` item\r\n\r\n${body}`;
    for (const name of ["notes.md", "notes.markdown"]) {
      const path = await write(name, md);
      const doc = await loadDocument(path);
      expect(doc.kind).toBe("markdown");
      expect(doc.text).toBe(md.replace(/\r\n/g, "\n"));
      expect(doc.text.startsWith("# The Devil's Dictionary\n\n> excerpt\n\n- **bold** item\n- `code` item\n")).toBe(true);
    }
  });

  it("reads other extensions as text when they are UTF-8 without NUL bytes", async () => {
    const text = (await readFile(join(CORPORA, "tinyshakespeare-input.txt"), "utf8")).slice(0, 2000);
    const path = await write("play.log", text);
    const doc = await loadDocument(path);
    expect(doc.kind).toBe("text");
    expect(doc.text).toBe(text);
    const noExt = await write("README", "Plain words, no extension.\r\nSecond line.");
    expect((await loadDocument(noExt)).text).toBe("Plain words, no extension.\nSecond line.");
  });

  it("refuses binary content and non-UTF-8 bytes under an unknown extension", async () => {
    const bin = await write("photo.jpg", Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 0x10]), randomBytes(512)]));
    const e1 = await failure(bin);
    expectOneCleanLine(e1, bin, "unsupported");
    expect(e1.message).toBe(`${bin}: not a supported document (binary content; supported: PDF, plain text, Markdown)`);

    const latin1 = await write("letter.dat", Buffer.from("Caf\xe9 cr\xe8me", "latin1"));
    const e2 = await failure(latin1);
    expectOneCleanLine(e2, latin1, "unsupported");
    expect(e2.message).toBe(`${latin1}: not a supported document (not UTF-8 text; supported: PDF, plain text, Markdown)`);
  });

  it("refuses a .txt that is really binary, but reads legacy Windows-1252 and UTF-16 text", async () => {
    const bin = await write("blob.txt", Buffer.from([0x41, 0x00, 0x42, 0x00, 0x00, 0x01]));
    expectOneCleanLine(await failure(bin), bin, "unsupported");

    const legacy = await write("legacy.txt", Buffer.from("Caf\xe9 cr\xe8me \x93quoted\x94", "latin1"));
    expect((await loadDocument(legacy)).text).toBe("Café crème “quoted”");

    const utf16 = await write("notepad.txt", Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from("Hello\r\nWörld", "utf16le")]));
    expect((await loadDocument(utf16)).text).toBe("Hello\nWörld");
  });

  it("refuses empty and whitespace-only text files", async () => {
    const empty = await write("empty.txt", "");
    const e1 = await failure(empty);
    expectOneCleanLine(e1, empty, "empty");
    expect(e1.message).toBe(`${empty}: the file is empty`);

    const blank = await write("blank.md", "\uFEFF \r\n\t\r\n");
    const e2 = await failure(blank);
    expectOneCleanLine(e2, blank, "empty");
    expect(e2.message).toBe(`${blank}: the file contains only whitespace, no text`);
  });
});

describe("loadDocument: paths", () => {
  it("refuses a missing file", async () => {
    const path = join(dir, "nope", "missing.pdf");
    const e = await failure(path);
    expectOneCleanLine(e, path, "not_found");
    expect(e.message).toBe(`${path}: no such file or folder`);
  });

  it("refuses a folder", async () => {
    const path = join(dir, "a-folder.pdf");
    await mkdir(path);
    const e = await failure(path);
    expectOneCleanLine(e, path, "unsupported");
    expect(e.message).toBe(`${path}: is a folder, not a document`);
  });

  it("names the file the way the caller spelled it", async () => {
    const rel = join("test", "fixtures", "documents", "encrypted.pdf");
    const e = await failure(rel);
    expect(e.path).toBe(rel);
    expect(e.message.startsWith(`${rel}: the PDF is encrypted`)).toBe(true);
  });
});
