import { UserError } from "../base/errors.js";

/** Why a document could not be turned into text. */
export type DocumentErrorCode = "not_found" | "empty" | "encrypted" | "no_text" | "not_pdf" | "unsupported" | "unreadable";

/**
 * A document the user pointed at cannot be used: one human message that starts with the file's path and says what
 * to do about it. A UserError: the CLI treats it like any other bad input (exit 1, no stack trace).
 */
export class DocumentError extends UserError {
  override readonly name = "DocumentError";

  constructor(
    readonly path: string,
    readonly code: DocumentErrorCode,
    detail: string,
  ) {
    super(`${path}: ${detail}`);
  }
}

/** Maps a failed fs call to a DocumentError; anything unexpected is "unreadable" with the system's reason. */
export function fsError(path: string, e: unknown): DocumentError {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case "ENOENT":
      return new DocumentError(path, "not_found", "no such file or folder");
    case "ENOTDIR":
      return new DocumentError(path, "not_found", "no such file or folder (a part of the path is not a folder)");
    case "EACCES":
    case "EPERM":
      return new DocumentError(path, "unreadable", "cannot read it (permission denied)");
    case "EISDIR":
      return new DocumentError(path, "unsupported", "is a folder, not a document");
    case "ELOOP":
      return new DocumentError(path, "unreadable", "cannot read it (too many symbolic links)");
    default: {
      const reason = e instanceof Error ? e.message.split("\n")[0] : String(e);
      return new DocumentError(path, "unreadable", `cannot read it (${reason})`);
    }
  }
}
