/**
 * The platform layer: the {@linkcode Storage} every file goes through (Deno's file system, the browser's OPFS, or
 * memory), `/`-separated paths, CRC-32 and strict argument parsing, so the library runs in a browser tab as under
 * Deno. Only `deno.ts` here touches `Deno.*` or `node:*`.
 *
 * @example Run the library on files in memory
 * ```ts
 * import { join, memoryStorage, setStorage, storage } from "@qlora/webgpu/platform";
 * import assert from "node:assert/strict";
 * const before = setStorage(memoryStorage());
 * await storage().mkdir("/m", { recursive: true });
 * await storage().writeFile(join("/m", "config.json"), "{}");
 * assert.deepEqual(await Array.fromAsync(storage().readDir("/m"), (e) => e.name), ["config.json"]);
 * setStorage(before);
 * ```
 *
 * @module
 */

export * from "./crc32.ts";
export * from "./deno.ts";
export * from "./memory.ts";
export * from "./opfs.ts";
export * from "./parse_args.ts";
export * from "./path.ts";
export * from "./storage.ts";
