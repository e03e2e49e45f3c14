/**
 * `/`-separated paths, as `node:path`'s POSIX functions give them (the library runs in browsers too, where there
 * is no `node:path`).
 *
 * @module
 */

import { storage } from "./storage.ts";

/**
 * `path` with `.` and `..` segments resolved and repeated or trailing slashes dropped ("." for an empty path).
 *
 * @param path The path.
 * @returns The normalized path.
 *
 * @example
 * ```ts
 * import { normalize } from "@qlora/webgpu/platform";
 * import assert from "node:assert/strict";
 * assert.equal(normalize("a//b/../c/"), "a/c");
 * assert.equal(normalize("/../x"), "/x");
 * ```
 */
export function normalize(path: string): string {
  const absolute = path.startsWith("/");
  const out: string[] = [];
  for (const s of path.split("/")) {
    if (s === "" || s === ".") continue;
    if (s !== "..") out.push(s);
    else if (out.length > 0 && out.at(-1) !== "..") out.pop();
    else if (!absolute) out.push("..");
  }
  const joined = out.join("/");
  return absolute ? `/${joined}` : joined || ".";
}

/**
 * The parts joined with `/` and normalized.
 *
 * @param parts Path segments.
 * @returns The joined path.
 *
 * @example
 * ```ts
 * import { join } from "@qlora/webgpu/platform";
 * import assert from "node:assert/strict";
 * assert.equal(join("out", "checkpoint-2", "adapter_config.json"), "out/checkpoint-2/adapter_config.json");
 * ```
 */
export function join(...parts: string[]): string {
  const nonEmpty = parts.filter((p) => p !== "");
  return nonEmpty.length === 0 ? "." : normalize(nonEmpty.join("/"));
}

/**
 * An absolute path: the parts joined from the right until one is absolute, after the storage's working folder.
 *
 * @param parts Path segments.
 * @returns The absolute, normalized path.
 *
 * @example
 * ```ts
 * import { resolve } from "@qlora/webgpu/platform";
 * import assert from "node:assert/strict";
 * assert.equal(resolve("/data", "x/../y.jsonl"), "/data/y.jsonl");
 * ```
 */
export function resolve(...parts: string[]): string {
  let out = "";
  for (let i = parts.length - 1; i >= 0 && !out.startsWith("/"); i--) {
    if (parts[i] !== "") out = out === "" ? parts[i] : `${parts[i]}/${out}`;
  }
  if (!out.startsWith("/")) out = `${storage().cwd()}/${out}`;
  const n = normalize(out);
  return n.length > 1 && n.endsWith("/") ? n.slice(0, -1) : n;
}

/**
 * The folder part of a path ("." when there is none).
 *
 * @param path The path.
 * @returns Its folder.
 *
 * @example
 * ```ts
 * import { dirname } from "@qlora/webgpu/platform";
 * import assert from "node:assert/strict";
 * assert.equal(dirname("/a/b/c.txt"), "/a/b");
 * assert.equal(dirname("c.txt"), ".");
 * ```
 */
export function dirname(path: string): string {
  const p = path.length > 1 ? path.replace(/\/+$/, "") : path;
  const i = p.lastIndexOf("/");
  if (i < 0) return ".";
  return i === 0 ? "/" : p.slice(0, i).replace(/\/+$/, "") || "/";
}

/**
 * The last part of a path.
 *
 * @param path The path.
 * @returns Its name.
 *
 * @example
 * ```ts
 * import { basename } from "@qlora/webgpu/platform";
 * import assert from "node:assert/strict";
 * assert.equal(basename("/models/tiny/"), "tiny");
 * ```
 */
export function basename(path: string): string {
  const p = path.replace(/\/+$/, "");
  return p.slice(p.lastIndexOf("/") + 1);
}
