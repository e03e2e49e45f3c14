import assert from "node:assert/strict";
import { requestGpu } from "../lib/gpu/device.ts";
import { parseFinetuneArgs } from "../lib/train/options.ts";
import { finetune, resolveFinetuneRun } from "../lib/train/trainer.ts";
import { readMetrics } from "../lib/train/metrics.ts";
import { readPeftAdapter } from "../lib/io/peft.ts";
import { SafetensorsFile } from "../lib/io/safetensors_reader.ts";
import { finetuneFixture, finetuneFlags } from "./_finetune_fixture.ts";

const script = new URL("../scripts/finetune.ts", import.meta.url).pathname;

function cli(args: string[]) {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { XDG_RUNTIME_DIR: "/tmp/xdg" },
  });
}

Deno.test("finetune CLI: --help, and a bad flag exits 1 naming it", async () => {
  const help = await cli(["--help"]).output();
  assert.equal(help.code, 0);
  assert.match(new TextDecoder().decode(help.stdout), /Usage: deno task finetune --model DIR/);
  const bad = await cli(["--model", "m", "--data", "d", "--out", "o", "--lora-r", "x"]).output();
  assert.equal(bad.code, 1);
  assert.match(new TextDecoder().decode(bad.stderr), /Error: --lora-r "x": expected an integer ≥ 1/);
});

Deno.test("finetune CLI: a run killed after a checkpoint and resumed with --resume matches an uninterrupted run", async () => {
  const dir = await finetuneFixture();
  try {
    const steps = 8;
    const parsed = parseFinetuneArgs(finetuneFlags(dir, "ref", steps));
    assert.ok(parsed.kind === "run");
    const sink = { writeSync: (b: Uint8Array) => b.length, isTerminal: () => false };
    await finetune(await requestGpu(), await resolveFinetuneRun(parsed), { sink });

    const child = cli(finetuneFlags(dir, "killed", steps)).spawn();
    const deadline = Date.now() + 120_000;
    while (!(await Deno.stat(`${dir}/killed/checkpoint-2`).then(() => true, () => false))) {
      assert.ok(Date.now() < deadline, "no checkpoint-2 within 2 minutes");
      await new Promise((r) => setTimeout(r, 20));
    }
    child.kill("SIGKILL");
    const killed = await child.output();
    assert.notEqual(killed.code, 0);
    assert.ok(!(await Deno.stat(`${dir}/killed/loss.svg`).then(() => true, () => false)), "killed before the end");

    const resumed = await cli(["--resume", `${dir}/killed`]).output();
    assert.equal(resumed.code, 0, new TextDecoder().decode(resumed.stderr));
    assert.match(new TextDecoder().decode(resumed.stderr), /Resuming .* from .*checkpoint-\d+ \(step \d+ of 8\)/);
    const strip = (ms: Awaited<ReturnType<typeof readMetrics>>) =>
      ms.map(({ tokens_per_s: _, gpu_bytes: __, run: ___, ...rest }) => rest);
    const ref = await readMetrics(`${dir}/ref/metrics.jsonl`);
    assert.equal(ref.length, steps);
    assert.deepEqual(strip(await readMetrics(`${dir}/killed/metrics.jsonl`)), strip(ref));
    const [a, b] = [await readPeftAdapter(`${dir}/ref`), await readPeftAdapter(`${dir}/killed`)];
    for (const [path, w] of a.modules) assert.deepEqual(b.modules.get(path), w, path);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("finetune CLI: a bad OUT, --max-seq-len or flag mix, a bad data line, a missing model folder and an unsupported config are clear errors", async () => {
  const dir = await finetuneFixture();
  try {
    const run = async (extra: (flags: string[]) => void) => {
      const flags = finetuneFlags(dir, "bad", 1);
      extra(flags);
      const out = await cli(flags).output();
      assert.equal(out.code, 1);
      return new TextDecoder().decode(out.stderr);
    };
    // Checked before the model or the data load.
    const setOut = (path: string) => (f: string[]) => (f[f.indexOf("--out") + 1] = path);
    await Deno.writeTextFile(`${dir}/file`, "");
    assert.match(await run(setOut(`${dir}/file`)), /Error: --out .*file is a file, not a folder/);
    await Deno.mkdir(`${dir}/used/checkpoint-2`, { recursive: true });
    assert.match(await run(setOut(`${dir}/used`)), /--out .*used already holds checkpoint-2: .*--resume .*--overwrite/);
    assert.match(
      await run((f) => f.push("--max-seq-len", "100000")),
      /--max-seq-len 100000 is above the model's context: max_position_embeddings is \d+ in .*config\.json/,
    );
    assert.match(await run((f) => f.push("--init-adapter", dir)), /--init-adapter .*drop --lora-r/);
    await Deno.writeTextFile(`${dir}/bad.jsonl`, '{"text": "ok"}\n{"prompt": "no completion"}\n');
    assert.match(await run((f) => (f[f.indexOf("--data") + 1] = `${dir}/bad.jsonl`)), /bad\.jsonl:2/);
    assert.match(await run((f) => (f[f.indexOf("--model") + 1] = `${dir}/nowhere`)), /nowhere/);
    const config = JSON.parse(await Deno.readTextFile(`${dir}/model/config.json`));
    await Deno.writeTextFile(`${dir}/model/config.json`, JSON.stringify({ ...config, hidden_act: "gelu" }));
    assert.match(await run(() => {}), /config\.json.*hidden_act.*gelu|hidden_act.*gelu.*config\.json/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("finetune: the adapter folder has PEFT names and shapes", async () => {
  const dir = await finetuneFixture();
  try {
    const gpu = await requestGpu();
    const run = await resolveFinetuneRun(parseFinetuneArgs(finetuneFlags(dir, "a", 1)) as never);
    await finetune(gpu, run, { sink: { writeSync: (b: Uint8Array) => b.length, isTerminal: () => false } });
    gpu.destroy();
    using file = await SafetensorsFile.open(`${dir}/a/adapter_model.safetensors`);
    const prefix = "base_model.model.model.layers.0.";
    const q = file.info(`${prefix}self_attn.q_proj.lora_A.weight`);
    const down = file.info(`${prefix}mlp.down_proj.lora_B.weight`);
    // r 4; hidden 32: q_proj's in_features and down_proj's out_features.
    assert.deepEqual([q.dtype, q.shape], ["F32", [4, 32]]);
    assert.deepEqual([down.dtype, down.shape], ["F32", [32, 4]]);
    assert.equal(file.names().length, 14);
    const config = JSON.parse(await Deno.readTextFile(`${dir}/a/adapter_config.json`));
    assert.deepEqual([config.peft_type, config.task_type, config.r], ["LORA", "CAUSAL_LM", 4]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
