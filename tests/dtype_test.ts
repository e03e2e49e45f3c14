// assertFinite: NaN and ±Inf found by bit pattern in f32, f16 and bf16 data, the first bad index named.
import assert from "node:assert/strict";
import { assertFinite, f32ToBf16 } from "../lib/dtype.ts";

Deno.test("assertFinite: the first NaN/Inf is named in f32, f16 and bf16; extremes that are finite pass", () => {
  const ok = new Float32Array([0, -0, 1e-45, -3.4028234663852886e38, 3.4028234663852886e38, 65504]);
  assertFinite(ok, "ok");
  assertFinite(new Uint8Array(Float16Array.from([0, 6e-8, -65504, 65504]).buffer), "ok", "f16");
  assertFinite(new Uint8Array(new Uint16Array([0x0001, 0x7f7f, 0xff7f]).buffer), "ok", "bf16");

  const x = new Float32Array(1000);
  x[700] = Infinity;
  x[900] = NaN;
  assert.throws(
    () => assertFinite(x, 'f.safetensors: tensor "w"'),
    /^Error: f\.safetensors: tensor "w": Infinity at index 700 is not finite$/,
  );
  const f16 = Float16Array.from([1, 2, -Infinity, NaN]);
  assert.throws(() => assertFinite(new Uint8Array(f16.buffer), "h", "f16"), /h: -Infinity at index 2 is not finite/);
  const bf16 = f32ToBf16(Float32Array.from([1, 2, 3, NaN]));
  assert.throws(() => assertFinite(new Uint8Array(bf16.buffer), "b", "bf16"), /b: NaN at index 3 is not finite/);
});

Deno.test("assertFinite: a view at an odd byte offset is read correctly", () => {
  const bytes = new Uint8Array(1 + 4 * 3);
  new DataView(bytes.buffer).setFloat32(1 + 4 * 2, -Infinity, true);
  assert.throws(() => assertFinite(bytes.subarray(1), "odd"), /odd: -Infinity at index 2 is not finite/);
  assertFinite(bytes.subarray(1, 9), "odd");
});
