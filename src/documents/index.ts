export { DocumentError, type DocumentErrorCode } from "./errors.js";
export { loadDocument, SUPPORTED_EXTENSIONS, type DocumentKind, type LoadedDocument, type LoadOptions } from "./load.js";
export { type PdfProgress } from "./pdf.js";
export { splitText, type SplitOptions } from "./split.js";
export { expandInputs, type ExpandOptions } from "./expand.js";
