import assert from "node:assert/strict";
import { MetricsWriter, readMetrics } from "../lib/train/metrics.ts";
import { lossSvg, writeLossSvg } from "../lib/train/loss_svg.ts";
import { formatDuration, ProgressBar } from "../lib/train/progress.ts";
import { checkpointDir, findLastCheckpoint, readTrainerState, saveCheckpoint } from "../lib/train/checkpoint.ts";

async function withDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const m = (step: number) => ({
  step,
  loss: 3 / step,
  lr: 2e-4,
  grad_norm: 0.5,
  tokens: 40,
  tokens_per_s: 80,
  gpu_bytes: 4096,
});

Deno.test("metrics: one object per step with exactly the documented fields; resume drops unsaved and torn lines", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/metrics.jsonl`;
    const w = await MetricsWriter.open(path);
    for (let s = 1; s <= 4; s++) await w.write(m(s));
    await assert.rejects(w.write(m(6)), /step 6 written after step 4/);
    await w.write({ ...m(5), loss: NaN });
    w.close();
    const lines = (await Deno.readTextFile(path)).trimEnd().split("\n").map((l) => JSON.parse(l));
    assert.equal(lines.length, 5);
    assert.deepEqual(Object.keys(lines[0]), ["step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "gpu_bytes"]);
    assert.deepEqual(lines[0], m(1));
    assert.equal(lines[4].loss, null);
    // A kill mid-line leaves a torn line; resuming from checkpoint 3 keeps steps 1..3 only.
    await Deno.writeTextFile(path, '{"step": 6, "lo', { append: true });
    const r = await MetricsWriter.open(path, 3);
    await r.write(m(4));
    r.close();
    assert.deepEqual((await readMetrics(path)).map((x) => x.step), [1, 2, 3, 4]);
    await assert.rejects(MetricsWriter.open(path, 9), /expected steps 1\.\.9 to resume, found 4/);
    await Deno.writeTextFile(path, "{}\n");
    await assert.rejects(readMetrics(path), /metrics\.jsonl:1: not a metrics line/);
  });
});

Deno.test("loss.svg: a well-formed picture with axes, nice ticks, labels and the curve", async () => {
  const points = Array.from({ length: 100 }, (_, i) => ({ step: i + 1, loss: 2 + Math.exp(-i / 20) }));
  points[50].loss = NaN;
  const svg = lossSvg(points, { title: "a < b" });
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" width="720" height="420"/);
  assert.match(svg, /a &lt; b/);
  assert.match(svg, />optimizer step</);
  assert.match(svg, />loss</);
  assert.equal(svg.match(/<polyline /g)?.length, 2); // the NaN splits the curve
  const xLabels = [...svg.matchAll(/text-anchor="middle">(\d+)<\/text>/g)].map((x) => Number(x[1]));
  assert.deepEqual(xLabels, [0, 20, 40, 60, 80, 100]);
  const yLabels = [...svg.matchAll(/text-anchor="end">([\d.]+)<\/text>/g)].map((x) => Number(x[1]));
  assert.ok(yLabels[0] <= 2 && yLabels.at(-1)! >= 3, `y ticks ${yLabels} enclose the losses`);
  // Every coordinate lies inside the picture.
  for (const [, x, y] of svg.matchAll(/(-?[\d.]+),(-?[\d.]+)/g)) {
    assert.ok(+x >= 0 && +x <= 720 && +y >= 0 && +y <= 420);
  }
  // A single point and a flat curve still draw.
  assert.match(lossSvg([{ step: 1, loss: 2 }]), /<circle /);
  assert.throws(() => lossSvg([{ step: 1, loss: NaN }]), /no finite loss/);
  const path = await Deno.makeTempFile({ suffix: ".svg" });
  await writeLossSvg(path, points);
  assert.equal(await Deno.readTextFile(path), lossSvg(points));
  await Deno.remove(path);
});

function sink(tty: boolean) {
  const out = { text: "" };
  return {
    out,
    sink: { writeSync: (b: Uint8Array) => (out.text += new TextDecoder().decode(b), b.length), isTerminal: () => tty },
  };
}

Deno.test("progress: redraws one line on a terminal, with step/total, loss, tok/s, ETA, GPU memory", () => {
  const { out, sink: s } = sink(true);
  let t = 0;
  const bar = new ProgressBar(4, { sink: s, now: () => t, barWidth: 4 });
  t = 2000;
  bar.update({ step: 1, loss: 1.23456, tokensPerS: 1234.5, gpuBytes: 3 * 2 ** 30 });
  assert.equal(out.text, "\r\x1b[2K█░░░ 1/4 | loss 1.2346 | 1235 tok/s | ETA 6s | GPU 3.00 GiB");
  bar.log("saved checkpoint-1");
  assert.ok(
    out.text.endsWith("\r\x1b[2Ksaved checkpoint-1\n█░░░ 1/4 | loss 1.2346 | 1235 tok/s | ETA 6s | GPU 3.00 GiB"),
  );
  t = 8000;
  bar.update({ step: 4, loss: 1, tokensPerS: 9.5, gpuBytes: 0 });
  assert.ok(out.text.endsWith("████ 4/4 | loss 1.0000 | 9.50 tok/s | ETA 0s | GPU 0 B\n"));
});

Deno.test("progress: plain lines off a terminal, throttled, first and last always; resumed ETA", () => {
  const { out, sink: s } = sink(false);
  let t = 0;
  const bar = new ProgressBar(100, { sink: s, now: () => t, plainIntervalMs: 5000 });
  for (let step = 51; step <= 100; step++) {
    t += 1000;
    bar.update({ step, loss: 1, tokensPerS: 10, gpuBytes: 1 });
  }
  const lines = out.text.trimEnd().split("\n");
  assert.equal(lines[0], "step 51/100 | loss 1.0000 | 10.0 tok/s | ETA 49s | GPU 1 B");
  assert.ok(lines.length >= 10 && lines.length <= 12, `${lines.length} lines`);
  assert.match(lines.at(-1)!, /^step 100\/100 .*ETA 0s/);
  assert.ok(!out.text.includes("\r"));
  assert.deepEqual([formatDuration(59.6), formatDuration(60), formatDuration(NaN)], ["1m00s", "1m00s", "--"]);
});

Deno.test("checkpoint: complete folders only, highest step wins, replaced atomically, state round-trips", async () => {
  await withDir(async (out) => {
    assert.equal(await findLastCheckpoint(`${out}/missing`), null);
    const state = (step: number) => ({
      step,
      dataPosition: { epoch: 0, index: step * 16, seed: 42 },
      args: ["--lr", "2e-4", "--seed", String(step)],
    });
    await saveCheckpoint(out, state(10), (dir) => Deno.writeTextFile(`${dir}/adapter_config.json`, "{}"));
    await saveCheckpoint(out, state(20), (dir) => Deno.writeTextFile(`${dir}/adapter_config.json`, "{}"));
    // A killed save: a temporary folder, and a checkpoint-30 without trainer_state.json (hand-made).
    await Deno.mkdir(`${out}/checkpoint-40.tmp-1-abc`);
    await Deno.mkdir(`${out}/checkpoint-30`);
    await Deno.writeTextFile(`${out}/checkpoint-9`, "a file, not a folder");
    assert.deepEqual(await findLastCheckpoint(out), { dir: checkpointDir(out, 20), step: 20 });
    assert.deepEqual(await readTrainerState(checkpointDir(out, 20)), state(20));
    // A failing writer leaves nothing behind; the old checkpoint stays.
    await assert.rejects(saveCheckpoint(out, state(20), () => Promise.reject(new Error("disk full"))), /disk full/);
    assert.deepEqual(await readTrainerState(checkpointDir(out, 20)), state(20));
    // Re-saving a step replaces it; stale temporary folders are cleaned.
    await saveCheckpoint(out, { ...state(20), args: ["--seed", "99"] }, async () => {});
    assert.deepEqual((await readTrainerState(checkpointDir(out, 20))).args, ["--seed", "99"]);
    const names = [...Deno.readDirSync(out)].map((e) => e.name).sort();
    assert.deepEqual(names, ["checkpoint-10", "checkpoint-20", "checkpoint-30", "checkpoint-9"]);
    await Deno.writeTextFile(`${out}/checkpoint-10/trainer_state.json`, '{"step": 1}');
    await assert.rejects(readTrainerState(`${out}/checkpoint-10`), /trainer_state\.json: expected step, dataPosition/);
  });
});
