import { UserError } from "../base/errors.js";

/** A profile that is missing, malformed or made for another model: exit code 1 with one message naming the file. */
export class ProfileError extends UserError {}
