import assert from "node:assert/strict";
import { argmax, sampleToken } from "../lib/generate/sampling.ts";
import { Rng } from "../lib/random.ts";

function frequencies(logits: number[], opts: { temperature?: number; topP?: number }, n: number) {
  const rng = new Rng(123);
  const counts = new Array(logits.length).fill(0);
  const x = new Float32Array(logits);
  for (let i = 0; i < n; i++) counts[sampleToken(x, rng, opts)]++;
  return counts.map((c) => c / n);
}

function softmax(logits: number[], t: number) {
  const m = Math.max(...logits);
  const e = logits.map((l) => Math.exp((l - m) / t));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

Deno.test("sampling: greedy is argmax (lowest index on ties) and draws nothing from the generator", () => {
  assert.equal(argmax(new Float32Array([-Infinity, 1, 5, 5])), 2);
  const rng = new Rng(1);
  assert.equal(sampleToken(new Float32Array([0, 9, 1]), rng), 1);
  assert.equal(sampleToken(new Float32Array([0, 9, 1]), rng, { temperature: 0, topP: 0.1 }), 1);
  assert.equal(rng.uniform(), new Rng(1).uniform());
});

Deno.test("sampling: temperature draws match softmax(logits / T) within 4 standard errors", () => {
  const logits = [1, 2, 0.5, -1, 2];
  const n = 40000;
  for (const t of [0.7, 1, 2]) {
    const f = frequencies(logits, { temperature: t }, n);
    softmax(logits, t).forEach((p, i) => {
      const se = Math.sqrt(p * (1 - p) / n);
      assert.ok(Math.abs(f[i] - p) < 4 * se + 1e-9, `T=${t} token ${i}: ${f[i]} vs ${p}`);
    });
  }
});

Deno.test("sampling: top-p keeps the nucleus (the crossing token included) and renormalizes", () => {
  // Probabilities 0.3, 0.5, 0.05, 0.15 (logits are their logs).
  const logits = [0.3, 0.5, 0.05, 0.15].map(Math.log);
  const n = 40000;
  const f = frequencies(logits, { temperature: 1, topP: 0.7 }, n); // 0.5 < 0.7 ≤ 0.8: keep {0.5, 0.3}
  assert.equal(f[2] + f[3], 0);
  assert.ok(Math.abs(f[1] - 0.5 / 0.8) < 0.01 && Math.abs(f[0] - 0.3 / 0.8) < 0.01, `${f}`);
  const tiny = frequencies(logits, { temperature: 1, topP: 0.01 }, 1000); // always the top token
  assert.deepEqual(tiny, [0, 1, 0, 0]);
  const nine = frequencies(logits, { temperature: 1, topP: 0.9 }, n); // mass before 0.15 is 0.8 < 0.9: kept
  assert.ok(nine[2] === 0 && Math.abs(nine[3] - 0.15 / 0.95) < 0.01, `${nine}`);
  assert.ok(frequencies(logits, { temperature: 1, topP: 1 }, n)[2] > 0.04);
});

Deno.test("sampling: masked tokens are never drawn; same seed, same tokens; bad inputs are errors", () => {
  const logits = new Float32Array([0, -Infinity, 0, -Infinity]);
  const f = frequencies([...logits], { temperature: 1.5 }, 2000);
  assert.equal(f[1] + f[3], 0);
  const draw = (seed: number) => {
    const rng = new Rng(seed);
    return Array.from({ length: 20 }, () => sampleToken(new Float32Array([1, 1.2, 0.8, 1.1]), rng, { temperature: 1 }));
  };
  assert.deepEqual(draw(5), draw(5));
  assert.notDeepEqual(draw(5), draw(6));
  const rng = new Rng(0);
  assert.throws(() => sampleToken(new Float32Array([0, NaN]), rng), /logit 1 is NaN/);
  assert.throws(() => sampleToken(new Float32Array([-Infinity]), rng, { temperature: 1 }), /every logit is -Infinity/);
  assert.throws(() => sampleToken(new Float32Array([0]), rng, { temperature: -1 }), /temperature -1/);
  assert.throws(() => sampleToken(new Float32Array([0]), rng, { temperature: 1, topP: 0 }), /topP 0/);
  assert.throws(() => argmax(new Float32Array(0)), /empty logits/);
});
