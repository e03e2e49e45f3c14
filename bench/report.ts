// `deno task bench:report [--size small|full] [--iters 5]`: runs every registered bench case once (see
// BENCH_FILES in _cases.ts) and prints ONE JSON array to stdout, one record per case:
// {name, shape, adapter, ms, gbps | gflops, roofline, roofline_value, ratio, timer}. Progress goes to stderr.

import { parseArgs } from "node:util";
import { requestGpu } from "../mod.ts";
import { BENCH_FILES, type BenchCase, type BenchRecord, benchSize, formatRecord, runCase } from "./_cases.ts";

const { values } = parseArgs({
  options: { size: { type: "string" }, iters: { type: "string", default: "5" } },
});
const size = values.size ?? benchSize();
if (size !== "small" && size !== "full") throw new Error(`--size ${size}: small or full`);
const gpu = await requestGpu();
const records: BenchRecord[] = [];
for (const file of BENCH_FILES) {
  const mod: { cases(size: string): BenchCase[] } = await import(file);
  for (const c of mod.cases(size)) {
    const r = await runCase(gpu, c, Number(values.iters));
    console.error(formatRecord(r));
    records.push(r);
  }
}
console.log(JSON.stringify(records));
gpu.destroy();
