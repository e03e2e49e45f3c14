import assert from "node:assert/strict";
import { dropoutScale, keepHash } from "../lib/kernels/mod.ts";

Deno.test("dropout: the mask keeps about 1-p of the elements and is a pure function of (seed, index)", () => {
  let kept = 0;
  for (let i = 0; i < 20000; i++) kept += dropoutScale(3, i, 0.25) > 0 ? 1 : 0;
  assert.ok(Math.abs(kept / 20000 - 0.75) < 0.02, `kept ${kept}`);
  assert.equal(keepHash(3, 17), keepHash(3, 17));
  assert.equal(dropoutScale(3, 17, 0), 1);
  assert.throws(() => dropoutScale(3, 17, 1), /Dropout probability 1 is outside \[0, 1\)/);
});
