import assert from "node:assert/strict";
import {
  AdamW,
  AdamW8bit,
  type Gpu,
  lrAt,
  OutOfBudgetError,
  PagedAdamW,
  PagedAdamW8bit,
  requestGpu,
  Rng,
  Tensor,
} from "../mod.ts";
import { gradNormBytes } from "../lib/kernels/mod.ts";
import { createDynamicMap } from "../lib/quant/mod.ts";
import { type Hyper, refStep } from "./_adamw_ref.ts";
import { assertClose, relError } from "./_assert.ts";

const f = Math.fround;
// Segments of at most 2048 (f32) elements per 16 KiB page: sizes cross segment and page boundaries.
const SIZES = [5000, 300, 1, 2048, 777, 3000];
const PAGE = 16 << 10;

interface Run {
  params: { name: string; param: Tensor; grad: Tensor }[];
  grads: (step: number) => Float32Array[];
}

function makeRun(gpu: Gpu, sizes: readonly number[], seed = 1): Run {
  const rng = new Rng(seed);
  const params = sizes.map((n, i) => ({
    name: `p${i}`,
    param: Tensor.fromArray(gpu, rng.normalArray(n), [n], { class: "weights", label: `p${i}` }),
    grad: Tensor.empty(gpu, [n], { label: `g${i}` }),
  }));
  const grads = (step: number) => {
    const r = new Rng(1000 + step);
    return sizes.map((n) => r.normalArray(n, 0, 0.5));
  };
  return { params, grads };
}

async function bytesOf(run: Run): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for (const p of run.params) out.push(await p.param.readBytes()); // one readback at a time
  return out;
}

Deno.test("AdamW: 60 steps match the TypeScript reference (params, m, v), with weight decay and a schedule", async () => {
  const gpu = await requestGpu();
  const run = makeRun(gpu, SIZES);
  const h: Hyper = { lr: 1e-2, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.01 };
  const ref = [];
  for (const p of run.params) {
    ref.push({ p: await p.param.toFloat32(), m: new Float32Array(p.param.size), v: new Float32Array(p.param.size) });
  }
  const opt = new AdamW(gpu, run.params, { lr: h.lr, weightDecay: h.wd, pageSize: PAGE });
  const schedule = { kind: "cosine" as const, lr: h.lr, warmupSteps: 5, totalSteps: 60 };
  for (let s = 0; s < 60; s++) {
    const g = run.grads(s);
    run.params.forEach((p, i) => p.grad.write(g[i]));
    const lr = lrAt(schedule, s);
    await opt.step({ lr });
    ref.forEach((r, i) => refStep(r.p, g[i], r.m, r.v, { ...h, lr }, s + 1));
  }
  for (let i = 0; i < SIZES.length; i++) {
    const { m, v } = await opt.state(`p${i}`);
    assertClose(await run.params[i].param.toFloat32(), ref[i].p, { rtol: 1e-5, atol: 1e-6 }, `param p${i}`);
    assertClose(m, ref[i].m, { rtol: 1e-5, atol: 1e-7 }, `m of p${i}`);
    assertClose(v, ref[i].v, { rtol: 1e-5, atol: 1e-9 }, `v of p${i}`);
  }
  assert.equal(opt.stepCount, 60);
  opt.destroy();
  gpu.destroy();
});

/**
 * Runs `steps` steps of a paged optimizer under a budget that holds `residentPages` of state on one device
 * and the resident optimizer on another; returns both.
 */
async function pagedVsResident(
  steps: number,
  stateBits: 32 | 8,
  residentPages: number,
  opts: { prefetch?: boolean; writeBack?: "eager" | "lazy"; midRun?: (gpu: Gpu, step: number) => void } = {},
) {
  const gpuR = await requestGpu();
  const runR = makeRun(gpuR, SIZES);
  const resident = stateBits === 8 ? new AdamW8bit(gpuR, runR.params, { pageSize: PAGE }) : new AdamW(
    gpuR,
    runR.params,
    { pageSize: PAGE },
  );
  // The paged side: the limit is what the tensors, the uniform ring and the optimizer's other buffers (8-bit code
  // tables, the gradient-norm buffer) hold plus `residentPages` pages.
  const probe = await requestGpu();
  const probeRun = makeRun(probe, SIZES);
  const others = probe.budget.report().current + (stateBits === 8 ? 2048 : 0) +
    gradNormBytes(SIZES.map((n) => ({ size: 4 * n })));
  probeRun.params.forEach((p) => (p.param.destroy(), p.grad.destroy()));
  probe.destroy();
  const limit = others + residentPages * PAGE;
  const gpuP = await requestGpu({ gpuMemory: limit });
  const runP = makeRun(gpuP, SIZES);
  const Paged = stateBits === 8 ? PagedAdamW8bit : PagedAdamW;
  const paged = new Paged(gpuP, runP.params, { pageSize: PAGE, prefetch: opts.prefetch, writeBack: opts.writeBack });
  let minOnHost = Infinity;
  for (let s = 0; s < steps; s++) {
    const g = runR.grads(s);
    runR.params.forEach((p, i) => p.grad.write(g[i]));
    runP.params.forEach((p, i) => p.grad.write(g[i]));
    await resident.step({ lr: 1e-2 });
    await paged.step({ lr: 1e-2 });
    minOnHost = Math.min(minOnHost, gpuP.budget.report().paging.pagesOnHost);
    opts.midRun?.(gpuP, s);
  }
  return { gpuR, gpuP, runR, runP, resident, paged, minOnHost, limit };
}

/**
 * Asserts the paged and resident runs ended with byte-equal parameters and states, and that the paged side's peak
 * (reading its states back included) never passed its limit; then frees both sides.
 */
async function assertIdenticalThenFree(r: Awaited<ReturnType<typeof pagedVsResident>>): Promise<void> {
  assert.deepEqual(await bytesOf(r.runP), await bytesOf(r.runR));
  assert.deepEqual(await r.paged.stateBytes(), await r.resident.stateBytes());
  assert.ok(r.gpuP.budget.report().peak <= r.limit, `peak ${r.gpuP.budget.report().peak} > limit ${r.limit}`);
  r.paged.destroy();
  r.resident.destroy();
  r.gpuP.destroy();
  r.gpuR.destroy();
}

Deno.test("PagedAdamW: 50 steps with over half the state on host are bit-identical to resident; peak <= limit", async () => {
  const r = await pagedVsResident(50, 32, 3);
  assert.ok(r.paged.pageCount >= 6, `${r.paged.pageCount} pages`);
  assert.ok(r.minOnHost >= r.paged.pageCount / 2, `only ${r.minOnHost} of ${r.paged.pageCount} pages on host`);
  const rep = r.gpuP.budget.report();
  assert.ok(rep.peak <= r.limit, `peak ${rep.peak} > limit ${r.limit}`);
  assert.ok(rep.paging.bytesPagedIn > 50 * PAGE && rep.paging.bytesPagedOut > 0);
  assert.ok(rep.staging > 0 && rep.byClass.optimizer <= 3 * PAGE);
  await assertIdenticalThenFree(r);
});

Deno.test("PagedAdamW: without prefetch and with one page of room, still bit-identical", async () => {
  const r = await pagedVsResident(8, 32, 1, { prefetch: false });
  assert.ok(r.gpuP.budget.report().peak <= r.limit);
  await assertIdenticalThenFree(r);
});

Deno.test("PagedAdamW: lazy write-back is bit-identical too, and reserveAsync takes its dirty pages", async () => {
  let checked = false;
  const r = await pagedVsResident(8, 32, 3, {
    writeBack: "lazy",
    midRun: (gpu, s) => {
      if (s !== 4) return;
      // Dirty pages cannot be dropped synchronously...
      const need = gpu.budget.available() + PAGE;
      assert.throws(() => gpu.createBuffer(need, "activations", "acts"), OutOfBudgetError);
      // ...but an awaited reservation writes them back first (checked after the run, below).
      checked = true;
    },
  });
  assert.ok(checked);
  await r.gpuP.budget.reserveAsync(r.gpuP.budget.available() + 3 * PAGE, "acts");
  r.gpuP.free(r.gpuP.createBuffer(r.gpuP.budget.available(), "activations", "acts"));
  assert.equal(r.gpuP.budget.report().paging.pagesResident, 0);
  await assertIdenticalThenFree(r);
});

Deno.test("PagedAdamW: activations filling the budget mid-run evict pages; they come back with nothing lost", async () => {
  let evictedTo = -1;
  const r = await pagedVsResident(12, 32, 6, {
    midRun: (gpu, s) => {
      if (s !== 5) return;
      // Everything the pager holds is clean after a step, so a plain (synchronous) allocation can take it.
      const before = gpu.budget.report().paging.pagesResident;
      assert.ok(before > 0);
      const act = gpu.createBuffer(gpu.budget.available() + before * PAGE, "activations", "activations");
      evictedTo = gpu.budget.report().paging.pagesResident;
      gpu.free(act);
    },
  });
  assert.equal(evictedTo, 0);
  assert.ok(r.gpuP.budget.report().peak <= r.limit);
  await assertIdenticalThenFree(r);
});

Deno.test("PagedAdamW8bit: bit-identical to AdamW8bit under a small budget", async () => {
  const r = await pagedVsResident(10, 8, 1);
  assert.ok(r.minOnHost >= 1);
  await assertIdenticalThenFree(r);
});

/** TypeScript reference of the 8-bit step: dequantize, update in f32, requantize to the nearest code per block. */
function ref8bitQuantize(x: Float32Array, code: Float32Array): { codes: Uint8Array; absmax: Float32Array } {
  const blocks = Math.ceil(x.length / 256);
  const absmax = new Float32Array(blocks);
  const codes = new Uint8Array(x.length);
  for (let b = 0; b < blocks; b++) {
    for (let i = b * 256; i < Math.min(x.length, b * 256 + 256); i++) absmax[b] = Math.max(absmax[b], Math.abs(x[i]));
    for (let i = b * 256; i < Math.min(x.length, b * 256 + 256); i++) {
      const y = absmax[b] > 0 ? f(x[i] / absmax[b]) : 0;
      let best = 0;
      for (let k = 1; k < 256; k++) if (Math.abs(y - code[k]) < Math.abs(y - code[best])) best = k;
      codes[i] = best;
    }
  }
  return { codes, absmax };
}

Deno.test("AdamW8bit: one step matches the reference; 200 steps stay close to 32-bit AdamW", async () => {
  const gpu = await requestGpu();
  const sizes = [4096, 1000];
  const run8 = makeRun(gpu, sizes, 7);
  const run32 = makeRun(gpu, sizes, 7);
  const opt8 = new AdamW8bit(gpu, run8.params, { lr: 1e-3 });
  const opt32 = new AdamW(gpu, run32.params, { lr: 1e-3 });
  const p0: Float32Array[] = [];
  for (const p of run32.params) p0.push(await p.param.toFloat32());
  const h: Hyper = { lr: 1e-3, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0 };
  for (let s = 0; s < 200; s++) {
    const g = run8.grads(s);
    run8.params.forEach((p, i) => p.grad.write(g[i]));
    run32.params.forEach((p, i) => p.grad.write(g[i]));
    await opt8.step();
    await opt32.step();
    if (s === 0) {
      // After one step the f32 moments are exact in the reference; the 8-bit ones are their quantized values.
      for (let i = 0; i < sizes.length; i++) {
        const p = Float32Array.from(p0[i]);
        const [m, v] = [new Float32Array(sizes[i]), new Float32Array(sizes[i])];
        refStep(p, g[i], m, v, h, 1);
        const st = await opt8.state(`p${i}`);
        const qm = ref8bitQuantize(m, createDynamicMap(true));
        const qv = ref8bitQuantize(v, createDynamicMap(false));
        const dq = (q: typeof qm, code: Float32Array) =>
          Float32Array.from(q.codes, (c, k) => code[c] * q.absmax[k >> 8]);
        assertClose(st.m, dq(qm, createDynamicMap(true)), { rtol: 1e-5, atol: 1e-9 }, `8-bit m of p${i}`);
        assertClose(st.v, dq(qv, createDynamicMap(false)), { rtol: 1e-5, atol: 1e-12 }, `8-bit v of p${i}`);
        assertClose(await run8.params[i].param.toFloat32(), p, { rtol: 1e-6, atol: 1e-7 }, `8-bit step 1 p${i}`);
      }
    }
  }
  // Accuracy against 32-bit: relative error of the total update after 200 steps (measured 2.3e-2 and 2.5e-2 on lavapipe; see docs).
  for (let i = 0; i < sizes.length; i++) {
    const a = await run8.params[i].param.toFloat32();
    const b = await run32.params[i].param.toFloat32();
    const err = relError(a.map((x, k) => x - p0[i][k]), b.map((x, k) => x - p0[i][k]));
    console.log(`8-bit vs 32-bit AdamW, p${i}: relative error of the 200-step update ${err.toExponential(2)}`);
    assert.ok(err < 0.05, `8-bit update of p${i} off by ${err}`);
  }
  opt8.destroy();
  opt32.destroy();
  gpu.destroy();
});

Deno.test("AdamW: save and load resume a run exactly (paged file into a resident optimizer)", async () => {
  const gpu = await requestGpu();
  const run = makeRun(gpu, SIZES);
  const opt = new PagedAdamW(gpu, run.params, { pageSize: PAGE, lr: 1e-2 });
  const path = await Deno.makeTempFile({ suffix: ".qlwopt" });
  const feed = (r: Run, s: number) => r.grads(s).forEach((g, i) => r.params[i].grad.write(g));
  for (let s = 0; s < 3; s++) (feed(run, s), await opt.step());
  await opt.save(path);
  const saved = await bytesOf(run);
  for (let s = 3; s < 6; s++) (feed(run, s), await opt.step());
  const run2 = makeRun(gpu, SIZES);
  run2.params.forEach((p, i) => p.param.write(new Float32Array(saved[i].slice().buffer)));
  const opt2 = new AdamW(gpu, run2.params, { pageSize: PAGE, lr: 1e-2 });
  await opt2.load(path);
  assert.equal(opt2.stepCount, 3);
  for (let s = 3; s < 6; s++) (feed(run2, s), await opt2.step());
  assert.deepEqual(await bytesOf(run2), await bytesOf(run));
  assert.deepEqual(await opt2.stateBytes(), await opt.stateBytes());

  // Mismatches and corruption: clear errors naming the file.
  const other = new AdamW(gpu, run2.params.slice(1), { pageSize: PAGE });
  await assert.rejects(
    other.load(path),
    (e: Error) => e.message.includes(path) && /parameter 0 is p0\[5000\]/.test(e.message),
  );
  const coarse = new AdamW(gpu, run2.params, { pageSize: 2 * PAGE });
  await assert.rejects(coarse.load(path), /saved with pageSize 16384/);
  const bytes = await Deno.readFile(path);
  bytes[bytes.length - 5] ^= 0x40;
  await Deno.writeFile(path, bytes);
  await assert.rejects(opt2.load(path), (e: Error) => e.message.includes(path) && /checksum mismatch/.test(e.message));
  await Deno.writeFile(path, bytes.subarray(0, bytes.length - 100));
  await assert.rejects(opt2.load(path), /truncated/);
  await Deno.writeFile(path, new TextEncoder().encode("not a state file at all"));
  await assert.rejects(opt2.load(path), /bad magic/);
  await Deno.remove(path);
  for (const o of [opt, opt2, other, coarse]) o.destroy();
  gpu.destroy();
});

Deno.test("PagedAdamW: a limit too small for one page is a clear OutOfBudgetError", async () => {
  const gpu = await requestGpu({ gpuMemory: "1100KiB" }); // the uniform ring takes 1 MiB
  const run = makeRun(gpu, [64]);
  const opt = new PagedAdamW(gpu, run.params, { pageSize: "256KiB" });
  await assert.rejects(
    opt.step(),
    (e: Error) =>
      e instanceof OutOfBudgetError && /too small for one page/.test(e.message) && /--page-size/.test(e.message) &&
      /256.00 KiB/.test(e.message),
  );
  opt.destroy();
  gpu.destroy();
});

Deno.test("PagedAdamW: with no parameters a step only counts", async () => {
  const gpu = await requestGpu();
  const empty = new PagedAdamW(gpu, []);
  await empty.step(); // nothing to update
  assert.equal(empty.stepCount, 1);
  empty.destroy();
  gpu.destroy();
});
