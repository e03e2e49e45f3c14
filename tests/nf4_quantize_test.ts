// GPU quantize against bitsandbytes' conformance vectors and the host reference (exact bytes), with the round trip.
import assert from "node:assert/strict";
import { dequantizeNF4, freeQuantized, type Gpu, type QuantType, requestGpu, Rng, Tensor } from "@qlora/webgpu";
import { f32ToBf16 } from "@qlora/webgpu/gpu";
import { downloadQuantized, uploadQuantized } from "@qlora/webgpu/kernels";
import {
  dequantize4bitRef,
  DYNAMIC_CODE_SIGNED,
  FP4_THRESHOLDS,
  type HostQuantized,
  INT4_THRESHOLDS,
  NF4_THRESHOLDS,
  quantize4bitRef,
} from "@qlora/webgpu/quant";
import { loadConformance } from "./_nf4_conformance.ts";
import { assertBits, gpuQuantize } from "./_nf4_gpu.ts";

const conf = await loadConformance();

function codeTableThresholds(quantType: QuantType): Float32Array {
  return quantType === "nf4" ? NF4_THRESHOLDS : quantType === "fp4" ? FP4_THRESHOLDS : INT4_THRESHOLDS;
}
const gpu: Gpu = await requestGpu();

function assertSameQuantized(actual: HostQuantized, expected: HostQuantized, label: string): void {
  assert.deepEqual(actual.packed, expected.packed, `${label}: packed`);
  const { absmax: a, nested: an, ...as } = actual.state;
  const { absmax: e, nested: en, ...es } = expected.state;
  assert.deepEqual(as, es, `${label}: state`);
  if (e instanceof Float32Array) assertBits(a, e, `${label}: absmax`);
  else assert.deepEqual(a, e, `${label}: absmax codes`);
  assert.equal(an === undefined, en === undefined, `${label}: nested`);
  if (an && en) {
    assert.equal(an.offset, en.offset, `${label}: offset`);
    assertBits(an.absmax, en.absmax, `${label}: absmax2`);
    assertBits(an.quantMap, en.quantMap, `${label}: code2`);
  }
}

for (const c of conf.cases) {
  Deno.test(`GPU matches conformance case ${c.name}`, async () => {
    const q = await gpuQuantize(gpu, Float32Array.from(c.x), { blocksize: c.blocksize, doubleQuant: c.double_quant });
    const host = await downloadQuantized(q);
    assert.deepEqual([...host.packed], c.packed, "packed");
    if (c.double_quant) {
      assert.deepEqual([...host.state.absmax], c.absmax_q, "absmax_q");
      assert.equal(host.state.nested!.offset, Math.fround(c.offset!), "offset");
      assertBits(host.state.nested!.absmax, c.absmax2!, "absmax2");
    } else {
      assertBits(host.state.absmax, c.absmax!, "absmax");
    }
    const y = dequantizeNF4(q);
    assertBits(await y.toFloat32(), c.dequant, "dequant");
    y.destroy();
    freeQuantized(q);
  });
}

Deno.test("GPU equals the reference on random inputs (sizes, blocks, dtypes, code tables)", async () => {
  const rng = new Rng(3);
  const cases: [number, number, QuantType, boolean, "f32" | "f16" | "bf16"][] = [
    [1, 64, "nf4", true, "f32"],
    [77, 64, "nf4", false, "f32"],
    [1000, 64, "nf4", true, "f16"],
    [4109, 128, "nf4", true, "bf16"],
    [5000, 256, "fp4", true, "f32"],
    [3001, 64, "fp4", false, "f16"],
    [2500, 64, "int4", true, "f32"],
    [70001, 64, "nf4", true, "f32"],
    [9000, 4096, "nf4", true, "f32"],
    [4097, 2048, "int4", false, "bf16"],
  ];
  for (const [n, blocksize, quantType, doubleQuant, dtype] of cases) {
    const label = `n=${n} block=${blocksize} ${quantType} dq=${doubleQuant} ${dtype}`;
    const x = rng.normalArray(n, 0, 0.05);
    for (let i = 0; i < n; i += 97) x[i] = 0; // exact zeros and a zero block
    x.fill(0, 128, 128 + blocksize);
    const q = await gpuQuantize(gpu, x, { blocksize, quantType, doubleQuant, dtype });
    // The reference sees the values the GPU saw (f16/bf16 rounding) and records the source dtype.
    const seen = dtype === "f32"
      ? x
      : await Tensor.fromArray(gpu, dtype === "f16" ? Float16Array.from(x) : f32ToBf16(x), [n], { dtype }).toFloat32();
    const ref = quantize4bitRef(seen, { blocksize, quantType, doubleQuant, dtype });
    const host = await downloadQuantized(q);
    assertSameQuantized(host, ref, label);
    const y = dequantizeNF4(q);
    assertBits(await y.toFloat32(), dequantize4bitRef(ref), `${label}: dequant`);
    y.destroy();
    freeQuantized(q);
  }
});

Deno.test("inputs larger than a storage binding are chunked by whole blocks", async () => {
  const n = 300_001;
  const x = new Rng(5).normalArray(n, 0, 0.02);
  const ref = quantize4bitRef(x, { blocksize: 128 });
  // 256 KiB bindings: 64Ki f32 values per chunk, 5 chunks.
  const [g256, g128, g4] = await Promise.all(
    [256 * 1024, 128 * 1024, 4096].map((b) => requestGpu({ maxBindingBytes: b })),
  );
  const q = await gpuQuantize(g256, x, { blocksize: 128 });
  const host = await downloadQuantized(q);
  assertSameQuantized(host, ref, "chunked");
  const [q128, qWhole] = [uploadQuantized(g128, host, "x"), uploadQuantized(gpu, host, "x")];
  for (const dtype of ["f32", "f16"] as const) {
    const y = dequantizeNF4(q128, { dtype });
    const whole = dequantizeNF4(qWhole, { dtype });
    assert.deepEqual(await y.readBytes(), await whole.readBytes(), `${dtype} chunked dequant`);
    y.destroy();
    whole.destroy();
  }
  freeQuantized(q);
  freeQuantized(qWhole);
  await assert.rejects(gpuQuantize(g4, x, {}), /binding limit 4096/);
  for (const g of [g256, g128, g4]) g.destroy();
});

Deno.test("NaN or Inf input: an error naming the tensor and the first bad index", async () => {
  const x = new Rng(2).normalArray(5000);
  x[4321] = Infinity;
  x[1234] = NaN;
  x[2000] = -Infinity;
  for (const dtype of ["f32", "f16", "bf16"] as const) {
    // Bytes in use: freed scratch goes to the buffer pool, which still counts in `current`.
    const inUse = () => gpu.budget.report().current - gpu.budget.report().pooled;
    const before = inUse();
    await assert.rejects(
      gpuQuantize(gpu, x, { label: "model.layers.0.mlp.up_proj.weight", dtype }),
      /model\.layers\.0\.mlp\.up_proj\.weight.*NaN at index 1234/,
    );
    assert.equal(inUse(), before, "buffers freed");
  }
  const y = new Float32Array(300);
  y[299] = -Infinity;
  await assert.rejects(gpuQuantize(gpu, y, { label: "w", doubleQuant: false }), /"w".*-Infinity at index 299/);
});

Deno.test("2-D grids (more workgroups than one dimension allows) cover every block", async () => {
  const x = new Rng(8).normalArray(40_000, 0, 0.02); // 20 quantize and 157 double-quant workgroups
  const ref = quantize4bitRef(x, { blocksize: 64 });
  const q = await gpuQuantize(gpu, x, { maxWorkgroupsPerDimension: 3 });
  assertSameQuantized(await downloadQuantized(q), ref, "2-D grid");
  const y = dequantizeNF4(q, { maxWorkgroupsPerDimension: 4 });
  assertBits(await y.toFloat32(), dequantize4bitRef(ref), "2-D grid dequant");
  y.destroy();
  freeQuantized(q);
});

Deno.test("values within an ulp of every threshold: the reciprocal and product round exactly", async () => {
  // Block b has absmax a_b (its first value); the others sit at T_k * a_b and 1-2 ulps either side, so an index
  // flips if 1/a or x * (1/a) is off by one ulp anywhere.
  const rng = new Rng(21);
  for (const quantType of ["nf4", "fp4", "int4"] as const) {
    const thresholds = codeTableThresholds(quantType);
    const blocks = 64;
    const x = new Float32Array(blocks * 64);
    const bits = new Uint32Array(1);
    const f = new Float32Array(bits.buffer);
    for (let b = 0; b < blocks; b++) {
      const a = Math.fround(Math.exp(rng.uniform(-12, 3)));
      x[b * 64] = rng.uniform() < 0.5 ? a : -a;
      for (let j = 1; j < 64; j++) {
        f[0] = thresholds[j % thresholds.length] * a * (j % 7 < 3 ? 1 : -1);
        bits[0] += (j % 5) - 2;
        x[b * 64 + j] = Math.abs(f[0]) <= a ? f[0] : 0;
      }
    }
    const ref = quantize4bitRef(x, { quantType, doubleQuant: false });
    const q = await gpuQuantize(gpu, x, { quantType, doubleQuant: false });
    assertSameQuantized(await downloadQuantized(q), ref, `${quantType} near thresholds`);
    freeQuantized(q);
  }
});

Deno.test("double quantization: scales exactly on a dynamic-map midpoint take the even code", async () => {
  // 256 blocks whose absmax are 1 ± m in adjacent pairs (so the mean is exactly 1 and c = ±m exactly), plus the pair
  // 0, 2 so that absmax2 = 1 and c * (1/absmax2) = c: every eligible midpoint m is hit exactly.
  const f = Math.fround;
  const mids: number[] = [];
  for (let j = 0; j < 255; j++) {
    const m = f(f(DYNAMIC_CODE_SIGNED[j] + DYNAMIC_CODE_SIGNED[j + 1]) * 0.5);
    if (f(1 + m) - 1 === m && f(1 - m) - 1 === -m && Math.abs(m) < 1) mids.push(m);
  }
  assert.ok(mids.length > 40, `${mids.length} midpoints usable`);
  const scales = [0, 2];
  for (let p = 0; p < 127; p++) {
    const m = mids[p % mids.length];
    scales.push(f(1 + m), f(1 - m));
  }
  const x = new Float32Array(256 * 64);
  scales.forEach((a, b) => x[b * 64] = a);
  const ref = quantize4bitRef(x);
  assert.equal(ref.state.nested!.offset, 1);
  assert.deepEqual([...ref.state.nested!.absmax], [1]);
  const q = await gpuQuantize(gpu, x, {});
  assertSameQuantized(await downloadQuantized(q), ref, "midpoint scales");
  freeQuantized(q);
});

Deno.test("f16 input: subnormal halves convert exactly", async () => {
  const rng = new Rng(4);
  // Whole blocks of f16 subnormals (|x| < 2^-14) and normal blocks with subnormal members.
  const x = Float32Array.from({ length: 1024 }, (_, i) => rng.normal(0, i < 512 ? 2e-5 : 0.01));
  const halves = Float32Array.from(Float16Array.from(x));
  const q = await gpuQuantize(gpu, x, { dtype: "f16", doubleQuant: false });
  assertSameQuantized(await downloadQuantized(q), quantize4bitRef(halves, { doubleQuant: false, dtype: "f16" }), "f16");
  freeQuantized(q);
});
