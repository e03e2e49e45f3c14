/// <reference lib="dom" />
// Times the page's demo in headless Chromium (not part of CI): the tiny model, the built-in reversal data and the
// prefilled settings, Start, to the end (or to --minutes, then Stop), then held-out exact-match accuracy of the final
// adapter (or of the last checkpoint) scored in the page. Needs `deno task build:web` and Debian's chromium.
//
//   deno run -A web/time_demo.ts [--steps 300] [--minutes 0] [--eval 40]

import { join } from "node:path";
import { serveWeb } from "../scripts/serve_web.ts";
import { intFlag, parseFlags } from "../lib/flags.ts";
import { CHROMIUM, launchChromium, pageErrors } from "./_browser.ts";

/** The library as the page exposes it (`globalThis.qlora`). */
type Lib = typeof import("./qlora_webgpu.ts");
/** What the page reports (`globalThis.pageState`). */
type PageState = { ready: boolean; done: boolean; error: string; losses: number[]; steps: number; seconds: number };

const FLAGS = {
  steps: intFlag("N", "optimizer steps (the demo's 300)", { min: 1, default: 300 }),
  minutes: intFlag("M", "stop after M minutes of training and score the last checkpoint; 0 = run to the end", {
    min: 0,
    default: 0,
  }),
  eval: intFlag("N", "held-out prompts scored (the demo's 40)", { min: 1, default: 40 }),
};
const opts = parseFlags(FLAGS, Deno.args);
if (opts === null) {
  console.log("deno run -A web/time_demo.ts [--steps N] [--minutes M] [--eval N]");
  Deno.exit(0);
}
const dist = join(import.meta.dirname!, "..", "dist", "web");
for (const p of [CHROMIUM, join(dist, "index.html")]) {
  await Deno.stat(p).catch(() => {
    throw new Error(`${p} is missing: apt-get install chromium, then deno task build:web`);
  });
}

const server = serveWeb(dist, 0);
const browser = await launchChromium();
try {
  const page = await browser.newPage();
  const errors = pageErrors(page);
  const bounded = <T>(p: Promise<T>) => Promise.race([p, errors]);
  await bounded(page.goto(`http://127.0.0.1:${server.addr.port}/`));
  await bounded(page.waitForFunction("pageState.ready || pageState.error", { timeout: 120_000 }));
  await page.$eval(
    '#settings input[data-flag="steps"]',
    (e, n) => ((e as HTMLInputElement).value = n),
    String(opts.steps),
  );
  const t0 = performance.now();
  await page.click("#start");
  const elapsed = () => (performance.now() - t0) / 1000;
  // Steps/s over the window from the first step on (model quantization and pipeline creation left out).
  let first: { step: number; t: number } | null = null;
  let lastPrint = 0;
  let stopped = false;
  for (;;) {
    await bounded(new Promise((r) => setTimeout(r, 5_000)));
    const s = await page.evaluate("pageState") as PageState;
    if (s.error) throw new Error(`page: ${s.error}`);
    if (first === null && s.steps > 0) first = { step: s.steps, t: elapsed() };
    if (s.done) break;
    if (elapsed() - lastPrint >= 60 && first) {
      lastPrint = elapsed();
      const rate = (s.steps - first.step) / (elapsed() - first.t);
      console.log(
        `${(elapsed() / 60).toFixed(1)} min: step ${s.steps}/${opts.steps}, loss ${s.losses.at(-1)?.toFixed(4)}, ` +
          `${rate.toFixed(4)} steps/s since step ${first.step}`,
      );
    }
    if (!stopped && opts.minutes > 0 && elapsed() >= opts.minutes * 60) {
      stopped = true;
      await page.click("#stop");
    }
  }
  const s = await page.evaluate("pageState") as PageState;
  const trainSeconds = elapsed();
  const rate = first && s.steps > first.step ? (s.steps - first.step) / (trainSeconds - first.t) : NaN;
  console.log(
    `Trained ${s.steps}/${opts.steps} steps in ${(trainSeconds / 60).toFixed(1)} min (Start to done), ` +
      `${rate.toFixed(4)} steps/s after step ${first?.step}, last loss ${s.losses.at(-1)?.toFixed(4)}`,
  );

  const e0 = performance.now();
  const r = await bounded(page.evaluate(async (count) => {
    const q = (globalThis as unknown as { qlora: Lib }).qlora;
    const fs = q.storage();
    const out = "/runs/web";
    const names = await Array.fromAsync(fs.readDir(out), (e) => e.name);
    // The final adapter, else the last checkpoint.
    const last = names.filter((n) => /^checkpoint-\d+$/.test(n)).sort((a, b) => +a.slice(11) - +b.slice(11)).at(-1);
    const adapter = names.includes("adapter_model.safetensors") ? out : last ? q.join(out, last) : null;
    if (adapter === null) return null;
    const text = await (await fetch("reverse_test.jsonl")).text();
    const pairs = text.split("\n").filter((l) => l.trim()).slice(0, count).map((l) => JSON.parse(l));
    const g = await q.TextGenerator.load(await q.requestGpu(), "/models/tiny", adapter);
    try {
      const maxNewTokens = Math.max(...pairs.map((p) => p.completion.length)) + 2;
      const e = await q.exactMatchAccuracy(pairs, async (p) => (await g.complete(p, { maxNewTokens })).text);
      return { adapter, accuracy: e.accuracy, correct: e.correct, total: e.total };
    } finally {
      g.destroy();
    }
  }, opts.eval));
  if (r === null) console.log("No checkpoint yet: nothing to score");
  else {
    console.log(
      `Held-out exact match of ${r.adapter}: ${(100 * r.accuracy).toFixed(0)}% (${r.correct}/${r.total}), ` +
        `scored in ${((performance.now() - e0) / 1000).toFixed(0)} s`,
    );
  }
} finally {
  await browser.close();
  await server.shutdown();
}
