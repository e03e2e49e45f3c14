/**
 * Writes the demo's task: reverse a three-letter lowercase word, as prompt/completion JSON Lines
 * (`{"prompt": "abc=", "completion": "cba"}`), with a training split and a disjoint held-out split. One fixed
 * length keeps it learnable by the tiny 2-layer model in a few hundred steps (with lengths 3-5 it had only learnt
 * the first letter after 200 steps).
 *
 * Usage: deno run -A scripts/make_task_data.ts [--out data] [--train 2000] [--test 200] [--min 3] [--max 3] [--seed 1]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { Rng } from "../lib/random.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    out: { type: "string", default: "data" },
    train: { type: "string", default: "2000" },
    test: { type: "string", default: "200" },
    min: { type: "string", default: "3" },
    max: { type: "string", default: "3" },
    seed: { type: "string", default: "1" },
  },
});
const [nTrain, nTest, min, max] = [values.train, values.test, values.min, values.max].map(Number);
const rng = new Rng(Number(values.seed));
const words = new Set<string>();
while (words.size < nTrain + nTest) {
  const n = min + rng.int(max - min + 1);
  words.add(Array.from({ length: n }, () => String.fromCharCode(97 + rng.int(26))).join(""));
}
const lines = [...words].map((w) => JSON.stringify({ prompt: `${w}=`, completion: [...w].reverse().join("") }));
await Deno.mkdir(values.out, { recursive: true });
await Deno.writeTextFile(`${values.out}/reverse_train.jsonl`, lines.slice(0, nTrain).join("\n") + "\n");
await Deno.writeTextFile(`${values.out}/reverse_test.jsonl`, lines.slice(nTrain).join("\n") + "\n");
console.log(`Wrote ${nTrain} training and ${nTest} held-out pairs to ${values.out}/reverse_{train,test}.jsonl`);
