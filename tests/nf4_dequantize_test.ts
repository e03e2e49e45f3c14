// GPU dequantize against bitsandbytes' conformance vectors and the host reference (exact bytes).
import assert from "node:assert/strict";
import { dequantizeNF4, freeQuantized, type Gpu, requestGpu, Rng } from "@qlora/webgpu";
import { downloadQuantized, uploadQuantized } from "@qlora/webgpu/kernels";
import { dequantize4bitRef, type HostQuantized, quantize4bitRef } from "@qlora/webgpu/quant";
import { loadConformance } from "./_nf4_conformance.ts";
import { assertBits, gpuQuantize } from "./_nf4_gpu.ts";

const conf = await loadConformance();
const gpu: Gpu = await requestGpu();

Deno.test("dequantize from the conformance file's own bytes (upload path)", async () => {
  for (const c of conf.cases) {
    const x = Float32Array.from(c.x);
    const ref = quantize4bitRef(x, { blocksize: c.blocksize, doubleQuant: c.double_quant });
    // Replace our codes with the file's, so dequantize is checked on bitsandbytes' bytes alone.
    const host: HostQuantized = {
      packed: Uint8Array.from(c.packed),
      state: c.double_quant
        ? {
          ...ref.state,
          absmax: Uint8Array.from(c.absmax_q!),
          nested: { ...ref.state.nested!, offset: Math.fround(c.offset!), absmax: Float32Array.from(c.absmax2!) },
        }
        : { ...ref.state, absmax: Float32Array.from(c.absmax!) },
    };
    const q = uploadQuantized(gpu, host, c.name);
    assert.deepEqual(await downloadQuantized(q), host);
    // Both code-table paths: baked into the pipeline (codeValues known) and read from the `code` buffer.
    for (const t of [q, { ...q, codeValues: undefined }]) {
      const y = dequantizeNF4(t);
      assertBits(await y.toFloat32(), c.dequant, c.name);
      y.destroy();
    }
    freeQuantized(q);
  }
});

Deno.test("f16 output is the f32 result rounded to nearest even (as Float16Array)", async () => {
  const rng = new Rng(9);
  const x = rng.normalArray(5003, 0, 0.03);
  x.set(rng.normalArray(512, 0, 1e-5), 1024); // subnormal in f16
  const q = await gpuQuantize(gpu, x, { blocksize: 64 });
  const want = Float16Array.from(dequantize4bitRef(await downloadQuantized(q)));
  const y = dequantizeNF4(q, { dtype: "f16" });
  assert.equal(y.dtype, "f16");
  assert.deepEqual(new Uint16Array((await y.readBytes()).slice().buffer), new Uint16Array(want.buffer));
  y.destroy();
  freeQuantized(q);
  // Scales that are exact f16 ties, the largest subnormal/smallest normal tie and overflow: with every code 15
  // (value 1) or 0 (value -1), the output is ±scale.
  const ties = [
    ...Array.from({ length: 16 }, (_, i) => 1 + (2 * i + 1) * 2 ** -11),
    ...Array.from({ length: 16 }, (_, i) => (2 * i + 1) * 2 ** -25),
    1023.5 * 2 ** -24,
    65519,
    65520,
    70000,
  ];
  const packed = new Uint8Array(ties.length * 32).fill(0xf0);
  const host: HostQuantized = {
    packed,
    state: {
      ...quantize4bitRef(new Float32Array(ties.length * 64), { doubleQuant: false }).state,
      absmax: Float32Array.from(ties),
    },
  };
  const qt = uploadQuantized(gpu, host, "ties");
  const yt = dequantizeNF4(qt, { dtype: "f16" });
  const expect = Float16Array.from(dequantize4bitRef(host));
  assert.deepEqual(new Uint16Array((await yt.readBytes()).slice().buffer), new Uint16Array(expect.buffer));
  yt.destroy();
  freeQuantized(qt);
});
