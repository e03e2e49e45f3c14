import assert from "node:assert/strict";
import { lrAt } from "../mod.ts";
import { assertClose } from "./_assert.ts";

Deno.test("lrAt: constant, warmup, linear and cosine as transformers' schedules", () => {
  assert.equal(lrAt({ kind: "constant", lr: 2e-4, warmupSteps: 10 }, 0), 2e-4);
  const w = { kind: "constant_with_warmup" as const, lr: 1, warmupSteps: 4 };
  assert.deepEqual([0, 1, 4, 100].map((s) => lrAt(w, s)), [0, 0.25, 1, 1]);
  const lin = { kind: "linear" as const, lr: 1, warmupSteps: 2, totalSteps: 12 };
  assert.deepEqual([0, 1, 2, 7, 12, 20].map((s) => lrAt(lin, s)), [0, 0.5, 1, 0.5, 0, 0]);
  const cos = { kind: "cosine" as const, lr: 1, warmupSteps: 2, totalSteps: 12 };
  assertClose([2, 7, 12].map((s) => lrAt(cos, s)), [1, 0.5, 0], { atol: 1e-12 }, "cosine");
  assert.throws(() => lrAt({ kind: "cosine", lr: 1 }, 3), /totalSteps/);
});
