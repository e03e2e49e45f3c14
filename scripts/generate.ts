/**
 * `deno task generate --model DIR [--adapter DIR] --prompt TEXT [options]`: text generation with a KV cache,
 * streamed to stdout (see `--help`).
 *
 * @module
 */

import { GENERATE_HELP, parseGenerateArgs } from "../lib/generate/options.ts";
import { parseQatBits } from "../lib/qlinear/qat_bits.ts";
import { TextGenerator } from "../lib/generate/text_generator.ts";
import { requestGpu } from "../lib/gpu/device.ts";

try {
  const o = parseGenerateArgs(Deno.args);
  if (o === null) {
    console.log(GENERATE_HELP);
    Deno.exit(0);
  }
  const gpu = await requestGpu({ gpuMemory: o.gpuMemory ?? undefined });
  const t0 = performance.now();
  const fakeQuant = o.fakeQuant === null ? null : parseQatBits(o.fakeQuant);
  const generator = await TextGenerator.load(gpu, o.model, o.adapter, fakeQuant);
  const t1 = performance.now();
  const encoder = new TextEncoder();
  const r = await generator.complete(o.prompt, {
    chat: o.chat,
    maxNewTokens: o.maxNewTokens,
    temperature: o.temperature,
    topP: o.topP,
    seed: o.seed,
    onText: (text) => Deno.stdout.writeSync(encoder.encode(text)),
  });
  Deno.stdout.writeSync(encoder.encode("\n"));
  const s = (performance.now() - t1) / 1000;
  console.error(
    `[${gpu.adapterName}; loaded in ${((t1 - t0) / 1000).toFixed(1)} s; ${r.promptTokens} prompt + ${r.ids.length} ` +
      `new tokens in ${s.toFixed(1)} s (${(r.ids.length / s).toFixed(1)} tok/s); stopped: ${r.finishReason}]`,
  );
  generator.destroy();
} catch (e) {
  console.error(`Error: ${(e as Error).message}`);
  Deno.exit(1);
}
