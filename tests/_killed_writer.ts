// One write that the kill tests SIGKILL midway:
//   [KILL_SKIP=N] [KILL_TEAR=1] deno run -A tests/_killed_writer.ts PATTERN SCENARIO ARGS...
// The first write to a file whose path matches PATTERN (a RegExp), or rename onto such a path, prints "stalled PATH"
// and never returns, so the test kills the process at exactly that moment. KILL_SKIP lets that many matching
// writes through first (to kill in a later training step); KILL_TEAR writes the first half of the stalled write,
// as a kill in the middle of a write leaves it. The seam lives in this script only: it
// wraps Deno.open (to know each file's path), FsFile.write and Deno.rename in this process; the library has no test
// hook.

import { MetricsWriter } from "../lib/train/metrics.ts";
import { writeLossSvg } from "../lib/train/loss_svg.ts";
import { writeSafetensors } from "../lib/io/safetensors_writer.ts";
import { quantizeFolder } from "../lib/io/quantize_folder.ts";
import { requestGpu } from "../lib/gpu/device.ts";
import { saveCheckpoint } from "../lib/train/checkpoint.ts";
import { parseFinetuneArgs } from "../lib/train/options.ts";
import { finetune, resolveFinetuneRun } from "../lib/train/trainer.ts";
import { parseQatArgs } from "../lib/qat/options.ts";
import { resolveQatRun, trainQat } from "../lib/qat/train.ts";
import { generateQatData } from "../lib/qat/data.ts";
import { LlamaModel } from "../lib/model/llama.ts";
import { loadTokenizer } from "../lib/io/tokenizer.ts";
import { FULL_PRECISION } from "../lib/qlinear/qat_bits.ts";

const [pattern, scenario, ...args] = Deno.args;
const stallAt = new RegExp(pattern);
let skip = Number(Deno.env.get("KILL_SKIP") ?? 0);
const tear = Deno.env.get("KILL_TEAR") === "1";
const paths = new WeakMap<Deno.FsFile, string>();
const open = Deno.open;
Deno.open = async (path: string | URL, options?: Deno.OpenOptions): Promise<Deno.FsFile> => {
  const file = await open(path, options);
  paths.set(file, String(path));
  return file;
};
function stall(path: string): Promise<never> {
  console.log(`stalled ${path}`);
  setInterval(() => {}, 1000); // keeps the process alive until the kill
  return new Promise(() => {});
}
const write = Deno.FsFile.prototype.write;
Deno.FsFile.prototype.write = async function (p: Uint8Array): Promise<number> {
  const path = paths.get(this);
  if (path === undefined || !stallAt.test(path) || skip-- > 0) return await write.call(this, p);
  // Half, and never ending at a line break, so a line is torn.
  if (tear) await write.call(this, p.subarray(0, (p.length >> 1) + (p[(p.length >> 1) - 1] === 10 ? 1 : 0)));
  return stall(path);
};
const rename = Deno.rename;
Deno.rename = (from: string | URL, to: string | URL): Promise<void> =>
  stallAt.test(String(to)) ? stall(String(to)) : rename(from, to);

if (scenario === "metrics-resume") await MetricsWriter.open(args[0], Number(args[1]));
else if (scenario === "loss-svg") await writeLossSvg(args[0], [{ step: 1, loss: 2 }, { step: 2, loss: 1 }]);
else if (scenario === "safetensors") {
  await writeSafetensors(args[0], [{ name: "x", dtype: "U8", shape: [2], data: new Uint8Array([1, 2]) }]);
} else if (scenario === "quantize") await quantizeFolder(await requestGpu(), { input: args[0], output: args[1] });
else if (scenario === "checkpoint-resave") {
  const state = { step: 2, dataPosition: { epoch: 0, index: 2, seed: 1 }, args: ["--seed", "2"] };
  await saveCheckpoint(args[0], state, (dir) => Deno.writeTextFile(`${dir}/x.txt`, "new"));
} else if (scenario === "finetune") {
  const sink = { writeSync: (b: Uint8Array) => b.length, isTerminal: () => false };
  await finetune(await requestGpu(), await resolveFinetuneRun(parseFinetuneArgs(args) as never), { sink });
} else if (scenario === "qat") {
  const sink = { writeSync: (b: Uint8Array) => b.length, isTerminal: () => false };
  await trainQat(await requestGpu(), await resolveQatRun(parseQatArgs(args) as never), { sink });
} else if (scenario === "qat-data") {
  const [model, out, samples, maxLen, batchSize] = args;
  const m = await LlamaModel.load(await requestGpu(), model, { lora: null, qat: { bits: FULL_PRECISION } });
  const opts = { out, samples: Number(samples), maxLen: Number(maxLen), batchSize: Number(batchSize) };
  await generateQatData(m, await loadTokenizer(model), opts);
} else throw new Error(`unknown scenario ${scenario}`);
console.log("finished without stalling");
