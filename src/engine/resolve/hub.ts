// node-llama-cpp's URI parsing and hub resolution, so that a file it downloaded is found by us and the other way
// round. They are not exported from the package entry point; they are loaded from its dist folder by file URL
// (which the package's `exports` map does not cover). package.json pins the exact version, and
// src/engine/node-llama-cpp.test.ts fails when these files or names move.
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { UserError } from "../../base/errors.js";

export type NlcParsedUri =
  | { type: "resolved"; uri: string; resolvedUrl: string; filePrefix: string; filename: string; fullFilename: string }
  | { type: "unresolved"; uri: string; filePrefix: string; baseFilename: string; possibleFullFilenames: string[] };

export type NlcModelDestination =
  { type: "url"; url: string } | { type: "uri"; url?: string; uri: string; parsedUri: NlcParsedUri } | { type: "file"; path: string };

export type NlcEndpoints = { huggingFace?: string } | undefined;

export interface NlcInternals {
  resolveModelDestination(destination: string, convertUrlToUri: boolean, endpoints: NlcEndpoints): NlcModelDestination;
  resolveParsedModelUri(uri: NlcParsedUri, options: { endpoints?: NlcEndpoints; signal?: AbortSignal }): Promise<Extract<NlcParsedUri, { type: "resolved" }>>;
  resolveHuggingFaceEndpoint(endpoints: NlcEndpoints): string;
  resolveModelFileAccessTokensTryHeaders(url: string, tokens: undefined, endpoints: NlcEndpoints): Promise<Record<string, string>[]>;
  resolveSplitGgufParts(pathOrUrl: string): string[];
}

let internals: Promise<NlcInternals> | undefined;

export function loadNodeLlamaCppInternals(): Promise<NlcInternals> {
  internals ??= (async () => {
    const entry = pathToFileURL(createRequire(import.meta.url).resolve("node-llama-cpp"));
    const load = async (relative: string) => (await import(new URL(relative, entry).href)) as Record<string, unknown>;
    const [destination, parse, endpoints, tokens, split] = await Promise.all([
      load("./utils/resolveModelDestination.js"),
      load("./utils/parseModelUri.js"),
      load("./utils/modelDownloadEndpoints.js"),
      load("./utils/modelFileAccessTokens.js"),
      load("./gguf/utils/resolveSplitGgufParts.js"),
    ]);
    const pick = (module: Record<string, unknown>, name: keyof NlcInternals) => {
      const fn = module[name];
      if (typeof fn !== "function") throw new UserError(`the installed node-llama-cpp lacks ${name}; kvzap needs node-llama-cpp 3.22 (reinstall kvzap)`);
      return fn;
    };
    return {
      resolveModelDestination: pick(destination, "resolveModelDestination"),
      resolveParsedModelUri: pick(parse, "resolveParsedModelUri"),
      resolveHuggingFaceEndpoint: pick(endpoints, "resolveHuggingFaceEndpoint"),
      resolveModelFileAccessTokensTryHeaders: pick(tokens, "resolveModelFileAccessTokensTryHeaders"),
      resolveSplitGgufParts: pick(split, "resolveSplitGgufParts"),
    } as NlcInternals;
  })();
  internals.catch(() => {
    internals = undefined;
  });
  return internals;
}
