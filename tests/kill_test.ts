// Kills mid-write (SIGKILL of a subprocess at a chosen write, see _killed_writer.ts) lose none of the user's work:
// what was on disk stays, leftovers are temporary names that sweepTempFiles removes, a killed quantize leaves no
// output folder that looks complete.

import assert from "node:assert/strict";
import { join } from "node:path";
import { MetricsWriter, readMetrics } from "../lib/train/metrics.ts";
import { sweepTempFiles } from "../lib/io/atomic_write.ts";
import { writeSafetensors } from "../lib/io/safetensors_writer.ts";
import { SafetensorsCheckpoint } from "../lib/io/safetensors_checkpoint.ts";
import { quantizeFolder } from "../lib/io/quantize_folder.ts";
import { writeTinyLlama } from "../lib/testing/tiny_llama.ts";
import { loadLlamaConfig } from "../lib/model/config.ts";
import { requestGpu } from "../lib/gpu/device.ts";
import { readTrainerState, saveCheckpoint } from "../lib/train/checkpoint.ts";
import { parseFinetuneArgs } from "../lib/train/options.ts";
import { finetune, resolveFinetuneRun } from "../lib/train/trainer.ts";
import { finetuneFixture, finetuneFlags } from "./_finetune_fixture.ts";
import { LlamaModel } from "../lib/model/llama.ts";
import { loadTokenizer } from "../lib/io/tokenizer.ts";
import { FULL_PRECISION } from "../lib/qlinear/qat_bits.ts";
import { generateQatData } from "../lib/qat/data.ts";
import { parseQatArgs } from "../lib/qat/options.ts";
import { resolveQatRun, trainQat } from "../lib/qat/train.ts";

const SCRIPT = new URL("./_killed_writer.ts", import.meta.url).pathname;

/**
 * Runs the script's scenario, SIGKILLs it at its first write to a path matching `pattern` (after `skip` such
 * writes; with `tear`, half of that write done); returns that path.
 */
async function killAtWrite(
  pattern: string | { pattern: string; skip: number; tear: boolean },
  scenario: string,
  ...args: string[]
): Promise<string> {
  const at = typeof pattern === "string" ? { pattern, skip: 0, tear: false } : pattern;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", SCRIPT, at.pattern, scenario, ...args],
    env: { KILL_SKIP: String(at.skip), KILL_TEAR: at.tear ? "1" : "0" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  let out = "";
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  while (!out.includes("\n")) {
    const r = await reader.read();
    if (r.done) break;
    out += r.value;
  }
  if (out.startsWith("stalled ")) child.kill("SIGKILL");
  await reader.cancel();
  const [status, err] = [await child.status, await stderr];
  assert.ok(out.startsWith("stalled "), `${scenario} did not stall at /${at.pattern}/: ${out}${err}`);
  assert.equal(status.signal, "SIGKILL");
  return out.slice("stalled ".length).trim();
}

const names = async (dir: string) => [...await Array.fromAsync(Deno.readDir(dir))].map((e) => e.name).sort();

const metric = (step: number) => ({
  step,
  loss: 1 / step,
  lr: 1e-4,
  grad_norm: 1,
  tokens: 8,
  tokens_per_s: 4,
  gpu_bytes: 64,
});

Deno.test("metrics: a kill while resume rewrites metrics.jsonl loses no step, and --resume works after it", async () => {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "metrics.jsonl");
  const w = await MetricsWriter.open(path);
  for (let s = 1; s <= 4; s++) await w.write(metric(s));
  w.close();
  const before = await Deno.readTextFile(path);
  const stalled = await killAtWrite("metrics\\.jsonl", "metrics-resume", path, "3");
  assert.notEqual(stalled, path, "the kept lines are written beside the file, not into it");
  assert.equal(await Deno.readTextFile(path), before);
  const again = await MetricsWriter.open(path, 3);
  await again.write(metric(4));
  again.close();
  assert.deepEqual((await readMetrics(path)).map((m) => m.step), [1, 2, 3, 4]);
  assert.deepEqual(await sweepTempFiles(dir), [stalled.slice(dir.length + 1)]);
  assert.deepEqual(await names(dir), ["metrics.jsonl"]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("final save: kills mid-write of the adapter and loss.svg keep the old files; the sweep removes the rest", async () => {
  const dir = await Deno.makeTempDir();
  const adapter = join(dir, "adapter_model.safetensors");
  await writeSafetensors(adapter, [{ name: "old", dtype: "U8", shape: [1], data: new Uint8Array([7]) }]);
  await Deno.writeTextFile(join(dir, "loss.svg"), "<svg/>\n");
  const leftovers = [
    await killAtWrite("adapter_model", "safetensors", adapter),
    await killAtWrite("loss\\.svg", "loss-svg", join(dir, "loss.svg")),
  ].map((p) => p.slice(dir.length + 1));
  assert.deepEqual(await names(dir), ["adapter_model.safetensors", "loss.svg", ...leftovers].sort());
  // This process's own temporary files may be in flight: they stay.
  const own = `metrics.jsonl.tmp-${Deno.pid}-0123abcd`;
  await Deno.writeTextFile(join(dir, own), "");
  assert.deepEqual(await sweepTempFiles(dir), leftovers.sort());
  assert.deepEqual(await names(dir), ["adapter_model.safetensors", "loss.svg", own]);
  using f = await SafetensorsCheckpoint.open(dir);
  assert.deepEqual([...await f.read("old")], [7]);
  assert.equal(await Deno.readTextFile(join(dir, "loss.svg")), "<svg/>\n");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("quantize: a killed run leaves no OUT, only OUT.partial; the next run replaces it", async () => {
  const dir = await Deno.makeTempDir();
  const [input, out] = [join(dir, "in"), join(dir, "out")];
  await writeTinyLlama(input, { layers: 1 });
  // config.json is written after every shard: the shards look complete, the folder is not.
  const stalled = await killAtWrite("config\\.json\\.tmp-", "quantize", input, out);
  assert.equal(stalled.startsWith(join(dir, "out.partial", "config.json.tmp-")), true, stalled);
  assert.deepEqual(await names(dir), ["in", "out.partial"]);
  await assert.rejects(
    SafetensorsCheckpoint.open(out),
    /out: cannot open checkpoint: .*out\.partial exists: the quantize/,
  );
  await assert.rejects(loadLlamaConfig(out), /config\.json: cannot read the model config: .*out\.partial exists/);
  await quantizeFolder(await requestGpu(), { input, output: out });
  assert.deepEqual(await names(dir), ["in", "out"]);
  assert.ok((await names(out)).includes("config.json"));
  await Deno.remove(dir, { recursive: true });
});

Deno.test("checkpoint: a kill between the renames of a re-save loses neither copy; the complete new one is restored", async () => {
  const out = await Deno.makeTempDir();
  const state = { step: 2, dataPosition: { epoch: 0, index: 2, seed: 1 }, args: ["--seed", "1"] };
  await saveCheckpoint(out, state, (dir) => Deno.writeTextFile(`${dir}/x.txt`, "old"));
  // checkpoint-2 is already renamed aside (.old-), the new copy (.tmp-) not yet into place.
  await killAtWrite("checkpoint-2$", "checkpoint-resave", out);
  assert.deepEqual((await names(out)).map((n) => n.replace(/-\d+-[0-9a-f]{8}$/, "")), [
    "checkpoint-2.old",
    "checkpoint-2.tmp",
  ]);
  await saveCheckpoint(out, { ...state, step: 4 }, async () => {});
  assert.deepEqual(await names(out), ["checkpoint-2", "checkpoint-4"]);
  assert.deepEqual((await readTrainerState(join(out, "checkpoint-2"))).args, ["--seed", "2"]);
  assert.equal(await Deno.readTextFile(join(out, "checkpoint-2", "x.txt")), "new");
  await Deno.remove(out, { recursive: true });
});

Deno.test("finetune: killed in the final save, --resume skips another run's and a damaged checkpoint, sweeps leftovers", async () => {
  const dir = await finetuneFixture();
  try {
    const out = join(dir, "out");
    const flags = finetuneFlags(dir, "out", 6); // checkpoints 2 and 4
    const stalled = await killAtWrite("/out/adapter_model\\.safetensors\\.tmp-", "finetune", ...flags);
    assert.ok(stalled.startsWith(join(out, "adapter_model.safetensors.tmp-")), stalled);
    // A stale checkpoint of another run with a higher step, and a damaged last checkpoint of this one.
    await Deno.mkdir(join(out, "checkpoint-9"));
    for await (const e of Deno.readDir(join(out, "checkpoint-2"))) {
      await Deno.copyFile(join(out, "checkpoint-2", e.name), join(out, "checkpoint-9", e.name));
    }
    const stale = await readTrainerState(join(out, "checkpoint-9"));
    await Deno.writeTextFile(
      join(out, "checkpoint-9/trainer_state.json"),
      JSON.stringify({ ...stale, step: 9, runId: "other" }),
    );
    const optimizer = join(out, "checkpoint-4", "optimizer.bin");
    await Deno.truncate(optimizer, (await Deno.stat(optimizer)).size - 1);
    const notes: string[] = [];
    const resumed = parseFinetuneArgs(["--resume", out]);
    assert.ok(resumed.kind === "resume");
    const run = await resolveFinetuneRun(resumed, (m) => notes.push(m));
    assert.equal(run.resumeFrom, join(out, "checkpoint-2"));
    assert.match(notes.join("\n"), /Ignoring .*checkpoint-9: written by another run/);
    assert.match(notes.join("\n"), /checkpoint-4 is damaged \(.*optimizer\.bin.*\); falling back/);
    const sink = { writeSync: (b: Uint8Array) => b.length, isTerminal: () => false };
    await finetune(await requestGpu(), run, { sink });
    assert.deepEqual((await readMetrics(join(out, "metrics.jsonl"))).map((m) => m.step), [1, 2, 3, 4, 5, 6]);
    const left = (await names(out)).filter((n) => n.includes(".tmp-") || n.includes(".old-"));
    assert.deepEqual(left, []);
    assert.ok((await names(out)).includes("loss.svg"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The tiny model (one layer) in `dir/m` and `samples` generated sequences of `maxLen` tokens in `out`. */
async function qatFixture(dir: string, out: string, samples: number, maxLen: number): Promise<void> {
  await writeTinyLlama(join(dir, "m"), { layers: 1 });
  const m = await LlamaModel.load(await requestGpu(), join(dir, "m"), { lora: null, qat: { bits: FULL_PRECISION } });
  await generateQatData(m, await loadTokenizer(join(dir, "m")), { out, samples, maxLen, batchSize: 2 });
  m.destroy();
}

Deno.test("qat-data: killed mid-write of a batch, the rerun cuts the torn line and writes the same file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const whole = join(dir, "whole.jsonl");
    await qatFixture(dir, whole, 6, 8);
    const out = join(dir, "gen.jsonl");
    // The second batch's append, half written.
    const at = { pattern: "gen\\.jsonl$", skip: 1, tear: true };
    assert.equal(await killAtWrite(at, "qat-data", join(dir, "m"), out, "6", "8", "2"), out);
    const [torn, expected] = [await Deno.readTextFile(out), await Deno.readTextFile(whole)];
    assert.ok(torn.startsWith(expected.split("\n").slice(0, 2).join("\n") + "\n"), "the first batch is whole");
    assert.ok(!torn.endsWith("\n") && torn.length < expected.length, "the second batch is torn");
    const m = await LlamaModel.load(await requestGpu(), join(dir, "m"), { lora: null, qat: { bits: FULL_PRECISION } });
    const opts = { out, samples: 6, maxLen: 8, batchSize: 2 };
    assert.equal(await generateQatData(m, await loadTokenizer(join(dir, "m")), opts), 6);
    m.destroy();
    assert.equal(await Deno.readTextFile(out), expected);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("qat: killed in a step after a checkpoint, --resume ends with the weights and metrics of a run through", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const data = join(dir, "gen.jsonl");
    await qatFixture(dir, data, 6, 12);
    const flags = (out: string) => [
      ...["--model", join(dir, "m"), "--data", data, "--out", join(dir, out), "--bits", "w4a8kv4"],
      ...["--steps", "5", "--save-every", "2", "--lr", "1e-3", "--batch-size", "2"],
    ];
    const sink = { writeSync: (b: Uint8Array) => b.length, isTerminal: () => false };
    const through = parseQatArgs(flags("a"));
    assert.ok(through.kind === "run");
    await trainQat(await requestGpu(), await resolveQatRun(through), { sink });
    // Step 4's metrics line half written: step 4 is trained, its checkpoint not yet saved.
    const at = { pattern: "/b/metrics\\.jsonl$", skip: 3, tear: true };
    assert.equal(await killAtWrite(at, "qat", ...flags("b")), join(dir, "b", "metrics.jsonl"));
    assert.deepEqual(await names(join(dir, "b")), ["checkpoint-2", "metrics.jsonl"]);
    const resumed = parseQatArgs(["--resume", join(dir, "b")]);
    assert.ok(resumed.kind === "resume");
    const run = await resolveQatRun(resumed, () => {});
    assert.equal(run.startStep, 2);
    await trainQat(await requestGpu(), run, { sink });
    const [a, b] = [join(dir, "a"), join(dir, "b")];
    assert.deepEqual(await names(b), await names(a));
    for (const f of ["model/model.safetensors", "checkpoint-4/qat_weights.safetensors"]) {
      assert.deepEqual(await Deno.readFile(join(b, f)), await Deno.readFile(join(a, f)), f);
    }
    const lines = async (out: string) =>
      (await readMetrics(join(out, "metrics.jsonl"))).map((m) => {
        const { tokens_per_s: _, gpu_bytes: _b, run: _r, ...rest } = m as typeof m & { run?: string };
        return rest; // timings, peak memory and the run id differ between the two runs
      });
    assert.deepEqual(await lines(b), await lines(a));
    const runs = (await Deno.readTextFile(join(b, "metrics.jsonl"))).trim().split("\n").map((l) => JSON.parse(l).run);
    assert.deepEqual(new Set(runs).size, 1, "the resumed steps carry the killed run's id");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
