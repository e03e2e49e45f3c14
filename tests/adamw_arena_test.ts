// AdamW over parameters packed in TensorArenas (merged into runs): the bits of separate tensors, one AdamW dispatch
// per page and one norm partial per chunk, the padding kept zero, and state files that record the run layout.
import assert from "node:assert/strict";
import { AdamW, type AdamWOptions, type Gpu, requestGpu, Rng, Tensor } from "../mod.ts";
import { TensorArena } from "../lib/gpu/mod.ts";
import { writeStateFile } from "../lib/optim/mod.ts";
import { countGpuCalls } from "./_gpu_counts.ts";

// Sizes cross 256-element blocks, segments and pages (16 KiB: 2048 f32 elements of state per page).
const SIZES = [5000, 300, 1, 2048, 777, 3000];
const PAGE = 16 << 10;

interface Side {
  params: { name: string; param: Tensor; grad: Tensor }[];
  arenas: TensorArena[];
}

function separate(gpu: Gpu): Side {
  const params = SIZES.map((n, i) => ({
    name: `p${i}`,
    param: Tensor.empty(gpu, [n], { class: "weights", label: `p${i}` }),
    grad: Tensor.empty(gpu, [n], { label: `g${i}` }),
  }));
  return { params, arenas: [] };
}

function packed(gpu: Gpu): Side {
  const specs = (kind: string) => SIZES.map((n, i) => ({ shape: [n], label: `${kind}${i}` }));
  const p = new TensorArena(gpu, specs("p"), { class: "weights" });
  const g = new TensorArena(gpu, specs("g"));
  return { params: SIZES.map((_, i) => ({ name: `p${i}`, param: p.tensors[i], grad: g.tensors[i] })), arenas: [p, g] };
}

/** The same seeded parameters, then `steps` steps with the same seeded gradients; returns the optimizer. */
async function train(side: Side, steps: number, options: AdamWOptions, maxGradNorm = Infinity): Promise<AdamW> {
  const rng = new Rng(3);
  for (const p of side.params) p.param.write(rng.normalArray(p.param.size));
  const opt = new AdamW(side.params[0].param.gpu, side.params, {
    pageSize: PAGE,
    lr: 1e-2,
    weightDecay: 0.1,
    ...options,
  });
  for (let s = 0; s < steps; s++) {
    const r = new Rng(100 + s);
    for (const p of side.params) p.grad.write(r.normalArray(p.grad.size, 0, 0.5));
    await opt.step({ lr: 1e-2 / (s + 1), maxGradNorm });
  }
  return opt;
}

const params = async (side: Side) => {
  const out: Float32Array[] = [];
  for (const p of side.params) out.push(await p.param.toFloat32());
  return out;
};

/** Every element of the arenas' buffers that no tensor covers. */
async function padding(gpu: Gpu, arena: TensorArena): Promise<number[]> {
  const out: number[] = [];
  for (const b of arena.buffers) {
    const all = new Float32Array(await gpu.read(b));
    const covered = new Uint8Array(all.length);
    for (const t of arena.tensors.filter((t) => t.buffer === b)) {
      covered.fill(1, t.byteOffset / 4, t.byteOffset / 4 + t.size);
    }
    all.forEach((v, i) => covered[i] || out.push(v));
  }
  return out;
}

for (
  const [name, options] of [
    ["AdamW", {}],
    ["PagedAdamW", { paged: true }],
    ["AdamW8bit", { stateBits: 8 }],
    ["PagedAdamW8bit", { paged: true, stateBits: 8 }],
  ] as const
) {
  Deno.test(`${name}: arena-packed parameters give the params and states of separate tensors bit for bit; padding stays 0`, async () => {
    const gpu = await requestGpu();
    const [a, b] = [separate(gpu), packed(gpu)];
    const [optA, optB] = [await train(a, 4, options), await train(b, 4, options)];
    assert.ok(optB.pageCount > 1, `${optB.pageCount} pages`);
    assert.deepEqual(await params(b), await params(a));
    for (const p of a.params) assert.deepEqual(await optB.state(p.name), await optA.state(p.name), p.name);
    for (const arena of b.arenas) {
      const pad = await padding(gpu, arena);
      assert.ok(pad.length > 0 && pad.every((v) => Object.is(v, 0)), "padding is +0 after steps with weight decay");
    }
    optA.destroy();
    optB.destroy();
    gpu.destroy();
  });
}

Deno.test("AdamW: packing changes only the gradient norm's summation order (measured: 4e-8 of the norm, 6e-8 on params after 3 clipped steps)", async () => {
  const gpu = await requestGpu();
  const [a, b] = [separate(gpu), packed(gpu)];
  const [optA, optB] = [await train(a, 3, {}, 1), await train(b, 3, {}, 1)];
  const [na, nb] = [await optA.gradNorm(), await optB.gradNorm()];
  assert.ok(Math.abs(na - nb) <= 1e-6 * na, `norm ${na} vs ${nb}`);
  const [pa, pb] = [await params(a), await params(b)];
  pa.forEach((x, i) =>
    x.forEach((v, k) => assert.ok(Math.abs(v - pb[i][k]) <= 1e-6, `p${i}[${k}]: ${v} vs ${pb[i][k]}`))
  );
  optA.destroy();
  optB.destroy();
  gpu.destroy();
});

Deno.test("AdamW: arena-packed, a step is one AdamW dispatch per page and one norm partial per chunk", async () => {
  // 16 KiB bindings: gradient-norm chunks of 4096 elements.
  const gpu = await requestGpu({ maxBindingBytes: 16 << 10 });
  for (const [kernel, stateBits] of [["adamw_f32", 32], ["adamw_8bit", 8]] as const) {
    const [sep, pack] = [separate(gpu), packed(gpu)];
    for (const side of [sep, pack]) {
      const opt = await train(side, 1, { stateBits });
      const counter = countGpuCalls();
      await opt.step();
      await gpu.sync();
      const c = counter.take();
      counter.stop();
      const count = (prefix: string) =>
        [...c.byKernel].filter(([k]) => k.startsWith(prefix)).reduce((s, [, n]) => s + n, 0);
      const runElems = pack.arenas[0].tensors.at(-1)!.byteOffset / 4 + SIZES.at(-1)!;
      const chunks = side === pack ? Math.ceil(runElems / 4096) : SIZES.reduce((s, n) => s + Math.ceil(n / 4096), 0);
      assert.equal(count("clip_grad_norm:partial"), chunks, `${kernel} norm partials`);
      assert.equal(count("clip_grad_norm:total"), 1);
      const segments = side === pack ? opt.pageCount : count(`${kernel}:main`);
      assert.equal(count(`${kernel}:main`), segments, `${kernel} dispatches`);
      if (side === sep) assert.ok(segments > opt.pageCount, "separate tensors: one dispatch per tensor segment");
      opt.destroy();
    }
  }
  gpu.destroy();
});

Deno.test("AdamW: a state file of another run layout is refused, naming the file and both layouts", async () => {
  const gpu = await requestGpu();
  const [a, b] = [separate(gpu), packed(gpu)];
  const [optA, optB] = [await train(a, 1, {}), await train(b, 1, {})];
  const path = await Deno.makeTempFile({ suffix: ".qlwopt" });
  await optB.save(path);
  await assert.rejects(optA.load(path), (e: Error) => {
    assert.equal(
      e.message,
      `Optimizer state file ${path}: holds state laid out in runs of parameters 0-5; this optimizer's is runs of ` +
        "parameters 0, 1, 2, 3, 4, 5",
    );
    return true;
  });
  // A file from before runs (no layout in its header) laid out each parameter alone.
  const header = {
    kind: "adamw-f32",
    step: 1,
    pageSize: PAGE,
    params: SIZES.map((n, i) => ({ name: `p${i}`, numel: n })),
  };
  await writeStateFile(path, header, await optA.stateBytes());
  await optA.load(path);
  await assert.rejects(
    optB.load(path),
    /holds state laid out in runs of parameters 0, 1, 2, 3, 4, 5; this optimizer's is runs of parameters 0-5/,
  );
  await Deno.remove(path);
  optA.destroy();
  optB.destroy();
  gpu.destroy();
});
