// The host reference against bitsandbytes' public conformance vectors, and its own invariants.
import assert from "node:assert/strict";
import { Rng } from "@qlora/webgpu";
import {
  bitsPerParameter,
  blockScales,
  createDynamicMap,
  dequantize4bitRef,
  DYNAMIC_CODE_SIGNED,
  FP4_CODE,
  fromBitsandbytes,
  type HostQuantized,
  INT4_CODE,
  nearestCode8,
  NF4_CODE,
  NF4_THRESHOLDS,
  quantize4bitRef,
  toBitsandbytes,
} from "@qlora/webgpu/quant";
import { loadConformance } from "./_nf4_conformance.ts";
import { assertClose } from "./_assert.ts";

const f = Math.fround;
const conf = await loadConformance();

/** Same float32 bits (so -0 differs from 0). */
function assertBits(actual: ArrayLike<number>, expected: ArrayLike<number>, label: string): void {
  const a = new Uint32Array(Float32Array.from(actual).buffer);
  const e = new Uint32Array(Float32Array.from(expected).buffer);
  assert.equal(a.length, e.length, `${label}: length`);
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== e[i]) assert.fail(`${label}[${i}]: got ${actual[i]}, want ${expected[i]}`);
  }
}

Deno.test("code tables equal bitsandbytes'", () => {
  assertBits(NF4_CODE, conf.nf4_code, "nf4_code");
  assertBits(createDynamicMap(true), conf.dynamic_code_signed, "dynamic_code_signed");
  // The thresholds of bitsandbytes' dQuantizeNF4 (conformance README).
  assertBits(NF4_THRESHOLDS, [
    -0.8480964004993439,
    -0.6106329262256622,
    -0.4599952697753906,
    -0.33967943489551544,
    -0.23460740596055984,
    -0.13791173323988914,
    -0.045525018125772476,
    0.03979014977812767,
    0.1202552504837513,
    0.2035212516784668,
    0.2920137718319893,
    0.3893125355243683,
    0.5016634166240692,
    0.6427869200706482,
    0.8614784181118011,
  ], "thresholds");
  const fp4 = [0, 0.0625, 8, 12, 4, 6, 2, 3, -0, -0.0625, -8, -12, -4, -6, -2, -3];
  assertBits(FP4_CODE, fp4.map((v) => v / 12), "fp4_code");
  assert.equal(INT4_CODE[14], 1);
});

for (const c of conf.cases) {
  Deno.test(`reference matches conformance case ${c.name}`, () => {
    const q = quantize4bitRef(Float32Array.from(c.x), { blocksize: c.blocksize, doubleQuant: c.double_quant });
    assert.deepEqual([...q.packed], c.packed, "packed");
    if (c.double_quant) {
      assert.deepEqual([...q.state.absmax], c.absmax_q, "absmax_q");
      assert.equal(q.state.nested!.offset, f(c.offset!), "offset");
      assertBits(q.state.nested!.absmax, c.absmax2!, "absmax2");
      assertBits(q.state.nested!.quantMap, c.code2!, "code2");
    } else {
      assertBits(q.state.absmax, c.absmax!, "absmax");
    }
    // Dequantize from the file's own bytes too, so the check does not lean on our quantizer.
    assertBits(dequantize4bitRef(q), c.dequant, "dequant");
  });
}

Deno.test("odd lengths pad with the zero index; zero blocks use it too", () => {
  const x = new Float32Array(129);
  x[128] = 0.5;
  for (const [quantType, z] of [["nf4", 7], ["int4", 7], ["fp4", 0]] as const) {
    const q = quantize4bitRef(x, { quantType, doubleQuant: false });
    assert.equal(q.packed.length, 65);
    assert.equal(q.packed[0], (z << 4) | z, quantType);
    assert.equal(q.packed[64] & 15, z, `${quantType} pad`);
    assert.deepEqual([...dequantize4bitRef(q)], [...x].map(f));
  }
});

Deno.test("round trips: codes are exact, error within half a level of the scale", () => {
  const rng = new Rng(7);
  for (const quantType of ["nf4", "fp4", "int4"] as const) {
    for (const doubleQuant of [false, true]) {
      const x = rng.normalArray(1000, 0, 0.1);
      const q = quantize4bitRef(x, { quantType, doubleQuant, blocksize: 128 });
      const y = dequantize4bitRef(q);
      const scales = blockScales(q.state);
      for (let i = 0; i < x.length; i++) {
        // Widest gap between levels is 1/3 (FP4 2/3..1); DQ perturbs the scale by under 1%.
        assert.ok(
          Math.abs(y[i] - x[i]) <= 0.34 * scales[Math.floor(i / 128)] + 0.01 * Math.abs(x[i]),
          `${quantType} ${i}`,
        );
      }
      // Requantizing the dequantized values reproduces them (without DQ, where the scale is exact); FP4's -0 may
      // come back as +0, so values are compared, not codes.
      if (!doubleQuant) {
        const again = quantize4bitRef(y, { quantType, doubleQuant, blocksize: 128 });
        assertClose(dequantize4bitRef(again), y, { atol: 0 }, `${quantType} requantized`);
      }
    }
  }
});

Deno.test("bitsandbytes interchange round trips and writes Python's JSON", () => {
  const q = quantize4bitRef(new Rng(1).normalArray(640), { shape: [10, 64], dtype: "bf16" });
  const t = toBitsandbytes(q);
  assert.deepEqual(Object.keys(t).sort(), [
    "",
    ".absmax",
    ".nested_absmax",
    ".nested_quant_map",
    ".quant_map",
    ".quant_state.bitsandbytes__nf4",
  ]);
  const json = new TextDecoder().decode(t[".quant_state.bitsandbytes__nf4"].data as Uint8Array);
  assert.match(
    json,
    /^\{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": \[10, 64\], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": [0-9.e-]+\}$/,
  );
  const back: HostQuantized = fromBitsandbytes(t, "w");
  assert.deepEqual(back, q);
  const plain = quantize4bitRef(new Float32Array([1, 2, 3]), { doubleQuant: false, quantType: "fp4" });
  assert.deepEqual(fromBitsandbytes(toBitsandbytes(plain)), plain);
  assert.throws(
    () => fromBitsandbytes({ ...t, ".absmax": { dtype: "F32", shape: [10], data: new Float32Array(10) } }, "w"),
    /w.*absmax/,
  );
  assert.throws(() => toBitsandbytes(quantize4bitRef(new Float32Array(2), { quantType: "int4" })), /int4/);
});

Deno.test("8-bit codes: nearest entry, a value on a midpoint takes the even index", () => {
  const code = DYNAMIC_CODE_SIGNED;
  for (let j = 0; j < 255; j++) {
    const mid = f(f(code[j] + code[j + 1]) * 0.5);
    assert.equal(nearestCode8(mid), j % 2 === 0 ? j : j + 1, `midpoint ${j}`);
    assert.equal(nearestCode8(code[j]), j, `entry ${j}`);
  }
  assert.equal(nearestCode8(-1), 0);
  assert.equal(nearestCode8(1), 255);
});

Deno.test("bits per parameter", () => {
  assert.equal(bitsPerParameter(64, false), 4.5);
  assert.equal(bitsPerParameter(64, true), 4 + 8 / 64 + 32 / (64 * 256));
  assert.equal(bitsPerParameter(64, true).toFixed(3), "4.127");
  assert.equal(bitsPerParameter(64, false, 128), 4.5);
  assert.equal(bitsPerParameter(256, true), 4 + 8 / 256 + 32 / (256 * 256));
  assert.equal(DYNAMIC_CODE_SIGNED.length, 256);
});
