import assert from "node:assert/strict";
import { requestGpu } from "../lib/gpu/device.ts";
import { generate } from "../lib/generate/generate.ts";
import { TextGenerator } from "../lib/generate/text_generator.ts";
import { TextStreamer } from "../lib/generate/text_streamer.ts";
import { parseGenerateArgs } from "../lib/generate/options.ts";
import { argmax } from "../lib/generate/sampling.ts";
import { quantizeFolder } from "../lib/io/quantize_folder.ts";
import { relError } from "./_assert.ts";
import { loraFixture, QWEN3_TINY } from "./_lora_fixture.ts";

const script = new URL("../scripts/generate.ts", import.meta.url).pathname;

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { XDG_RUNTIME_DIR: "/tmp/xdg" },
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

const dir = await loraFixture();
const qwen3 = await loraFixture(QWEN3_TINY);
const gpu = await requestGpu();

Deno.test("generate: greedy KV-cached decoding equals argmax of a full forward at every step; stop ids end it", async () => {
  const g = await TextGenerator.load(gpu, `${dir}/model`, `${dir}/adapter`);
  const prompt = g.encodePrompt("abc=");
  const streamed: number[] = [];
  const r = await generate(g.model, prompt, { maxNewTokens: 6, onToken: (id) => streamed.push(id) });
  assert.equal(r.finishReason, "length");
  assert.deepEqual(streamed, r.ids);
  const seq = [...prompt];
  for (const id of r.ids) {
    const T = seq.length;
    const f = await g.model.forward({ batchSize: 1, seqLen: T, inputIds: Int32Array.from(seq) }, { logits: true });
    const all = await f.logits!.toFloat32();
    f.logits!.destroy();
    const V = g.model.config.vocabSize;
    assert.equal(argmax(all.subarray((T - 1) * V, T * V)), id, `token ${seq.length - prompt.length}`);
    seq.push(id);
  }
  // The second token as a stop id: generation ends before it.
  const stopped = await generate(g.model, prompt, { maxNewTokens: 6, stopIds: [r.ids[1]] });
  assert.equal(stopped.finishReason, "stop");
  assert.deepEqual(stopped.ids, r.ids.slice(0, r.ids.indexOf(r.ids[1])));
  await assert.rejects(generate(g.model, [], {}), /no tokens/);
  g.destroy();
});

Deno.test("generate: Qwen3 (q/k norms) prefill and decode steps give the full forward's logits, prompts of two lengths", async () => {
  const g = await TextGenerator.load(gpu, `${qwen3}/model`, `${qwen3}/adapter`);
  const model = g.model;
  assert.ok(model.config.qkNorm);
  const V = model.config.vocabSize;
  const seqs = [g.encodePrompt("abcd="), g.encodePrompt("x=")];
  const T = Math.max(...seqs.map((s) => s.length));
  const ids = new Int32Array(2 * T);
  seqs.forEach((s, b) => ids.set(s, b * T));
  const cache = model.createKvCache(2, 16);
  let logits = await model.prefill(cache, {
    batchSize: 2,
    seqLen: T,
    inputIds: ids,
    lengths: seqs.map((s) => s.length),
  });
  for (let step = 0;; step++) {
    for (const [b, s] of seqs.entries()) {
      const f = await model.forward({ batchSize: 1, seqLen: s.length, inputIds: Int32Array.from(s) }, { logits: true });
      const want = (await f.logits!.toFloat32()).subarray((s.length - 1) * V);
      f.logits!.destroy();
      const got = logits.subarray(b * V, (b + 1) * V);
      assert.ok(relError(got, want) < 1e-5, `step ${step}, sequence ${b}: rel-L2 ${relError(got, want)}`);
    }
    if (step === 3) break;
    const next = seqs.map((_, b) => argmax(logits.subarray(b * V, (b + 1) * V)));
    next.forEach((id, b) => seqs[b].push(id));
    logits = await model.decodeStep(cache, Int32Array.from(next));
  }
  cache.destroy();
  g.destroy();
});

Deno.test("generate: text streamer holds back split UTF-8 characters", () => {
  const s = new TextStreamer({ decode: (ids) => new TextDecoder().decode(Uint8Array.from(ids)) });
  const pieces = [..."né€!"].flatMap((c) => [...new TextEncoder().encode(c)]).map((b) => s.push(b));
  assert.deepEqual(pieces, ["n", "", "é", "", "", "€", "!"]);
  assert.equal(s.flush(), "");
  assert.equal(s.push(0xe2), "");
  assert.equal(s.flush(), "\uFFFD");
});

Deno.test("generate: flags", () => {
  assert.equal(parseGenerateArgs(["-h"]), null);
  const o = parseGenerateArgs(["--model", "m", "--prompt", "p", "--top-p", "0.9", "--chat", "--gpu-memory", "1GiB"])!;
  assert.deepEqual([o.topP, o.chat, o.gpuMemory, o.temperature, o.adapter], [0.9, true, 2 ** 30, 0, null]);
  assert.throws(() => parseGenerateArgs(["--model", "m", "--prompt", "p", "--top-p", "0"]), /--top-p "0"/);
  assert.throws(() => parseGenerateArgs(["--model", "m", "--prompt", "p", "--bogus"]), /bogus/);
});

Deno.test("generate CLI: greedy output equals the library's; the adapter changes it; seeded sampling repeats", async () => {
  const base = ["--model", `${dir}/model`, "--prompt", "abc=", "--max-new-tokens", "8"];
  const plain = await cli(base);
  assert.equal(plain.code, 0, plain.stderr);
  const g = await TextGenerator.load(gpu, `${dir}/model`);
  assert.equal(plain.stdout, (await g.complete("abc=", { maxNewTokens: 8 })).text + "\n");
  g.destroy();
  assert.equal((await cli(base)).stdout, plain.stdout);
  const adapted = await cli([...base, "--adapter", `${dir}/adapter`]);
  assert.equal(adapted.code, 0, adapted.stderr);
  const ga = await TextGenerator.load(gpu, `${dir}/model`, `${dir}/adapter`);
  assert.equal(adapted.stdout, (await ga.complete("abc=", { maxNewTokens: 8 })).text + "\n");
  ga.destroy();
  assert.notEqual(adapted.stdout, plain.stdout);
  const sampled = [...base, "--temperature", "1.5", "--top-p", "0.95", "--seed", "7"];
  const [s1, s2] = [await cli(sampled), await cli(sampled)];
  assert.equal(s1.code, 0, s1.stderr);
  assert.equal(s1.stdout, s2.stdout);
});

Deno.test("generate CLI: a missing model or adapter folder exits 1 naming it", async () => {
  const noModel = await cli(["--model", `${dir}/nope`, "--prompt", "x"]);
  assert.equal(noModel.code, 1);
  assert.match(noModel.stderr, /Error: Model folder .*nope does not exist/);
  const noAdapter = await cli(["--model", `${dir}/model`, "--adapter", `${dir}/nope`, "--prompt", "x"]);
  assert.equal(noAdapter.code, 1);
  assert.match(noAdapter.stderr, /Error: Adapter folder .*nope does not exist/);
  const notAdapter = await cli(["--model", `${dir}/model`, "--adapter", `${dir}/model`, "--prompt", "x"]);
  assert.equal(notAdapter.code, 1);
  assert.match(notAdapter.stderr, /Error: .*model\/adapter_config\.json: cannot read/);
});

Deno.test("generate: a bitsandbytes 4-bit folder with the adapter gives the plain folder's output; --chat runs", async () => {
  await quantizeFolder(gpu, { input: `${dir}/model`, output: `${dir}/model-nf4` });
  const texts: string[] = [];
  for (const m of ["model", "model-nf4"]) {
    const g = await TextGenerator.load(gpu, `${dir}/${m}`, `${dir}/adapter`);
    texts.push((await g.complete("xyz=", { maxNewTokens: 6 })).text);
    g.destroy();
  }
  assert.equal(texts[1], texts[0]);
  const chat = await cli(["--model", `${dir}/model-nf4`, "--prompt", "hi", "--chat", "--max-new-tokens", "3"]);
  assert.equal(chat.code, 0, chat.stderr);
  assert.match(chat.stderr, /prompt \+ \d new tokens/);
});
