// One write that the kill tests SIGKILL midway:
//   deno run -A tests/_killed_writer.ts PATTERN SCENARIO ARGS...
// The first write to a file whose path matches PATTERN (a RegExp), or rename onto such a path, prints "stalled PATH"
// and never returns, so the test kills the process at exactly that moment. The seam lives in this script only: it
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

const [pattern, scenario, ...args] = Deno.args;
const stallAt = new RegExp(pattern);
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
Deno.FsFile.prototype.write = function (p: Uint8Array): Promise<number> {
  const path = paths.get(this);
  return path === undefined || !stallAt.test(path) ? write.call(this, p) : stall(path);
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
} else throw new Error(`unknown scenario ${scenario}`);
console.log("finished without stalling");
