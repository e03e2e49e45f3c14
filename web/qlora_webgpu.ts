/**
 * The browser build's entry (`deno task build:web` → `dist/web/qlora-webgpu.js`): the everyday API of `mod.ts`
 * (none of it is a CLI), the storages (OPFS, memory) a page sets, and the tiny model writers for in-page demos.
 *
 * @module
 */

export * from "../mod.ts";
export { memoryStorage, opfsStorage, setStorage, type Storage, storage } from "../lib/platform/mod.ts";
export { join } from "../lib/platform/path.ts";
export { readFlags } from "../lib/flags.ts";
export { writeTinyLlama } from "../lib/testing/tiny_llama.ts";
export { downloadQuantized } from "../lib/kernels/nf4_quantize.ts";
// Every kernel's source, so a page (and the browser test) can compile each one.
export { WGSL } from "../lib/gpu/_wgsl.ts";
export { reversalDemoFlags, reversalDemoModel } from "../scripts/_reversal_demo.ts";
export { readMetrics } from "../lib/train/metrics.ts";
export { exactMatchAccuracy } from "../lib/data/eval.ts";
