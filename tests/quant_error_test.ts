// The QLoRA paper's point in miniature: on normally distributed weights NF4 reconstructs best.
import assert from "node:assert/strict";
import { quantizationErrors, requestGpu, Rng, Tensor } from "@qlora/webgpu";

Deno.test("NF4 has the lowest reconstruction error on normal weights; DQ costs little", async () => {
  const gpu = await requestGpu();
  const w = Tensor.fromArray(gpu, new Rng(11).normalArray(256 * 256, 0, 0.02), [256, 256], { label: "w" });
  const rows = await quantizationErrors(gpu, w);
  w.destroy();
  const by = (t: string, dq: boolean) => rows.find((r) => r.quantType === t && r.doubleQuant === dq)!;
  const [nf4, nf4Plain, fp4, int4] = [by("nf4", true), by("nf4", false), by("fp4", true), by("int4", true)];
  assert.ok(nf4.relError < fp4.relError, `nf4 ${nf4.relError} < fp4 ${fp4.relError}`);
  assert.ok(nf4.relError < int4.relError, `nf4 ${nf4.relError} < int4 ${int4.relError}`);
  // Normal weights in blocks of 64: NF4 lands near 0.09-0.10 relative error.
  assert.ok(nf4.relError > 0.05 && nf4.relError < 0.12, `nf4 ${nf4.relError}`);
  // Double quantization perturbs the scales by well under 1%.
  assert.ok(Math.abs(nf4.relError - nf4Plain.relError) < 0.01 * nf4Plain.relError + 1e-3);
  assert.ok(Math.abs(nf4.bitsPerParameter - 4.127) < 0.001, `${nf4.bitsPerParameter}`);
  assert.equal(nf4Plain.bitsPerParameter, 4.5);
});
