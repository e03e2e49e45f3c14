/// <reference lib="dom" />
// Browser tests of the page (deno task test:web, after deno task build:web): headless Chromium on SwiftShader
// runs every kernel through Chrome's WGSL compiler, quantizes the NF4 conformance vectors, fine-tunes the tiny demo
// model (losses equal to the same run under Deno), its adapter, loaded back under Deno, generates the same text, and a
// run reloaded mid-step resumes from its OPFS checkpoint with the uninterrupted run's losses.

import assert from "node:assert/strict";
import { join } from "node:path";
import { serveWeb } from "../scripts/serve_web.ts";
import { reversalDemoFlags, reversalDemoModel } from "../scripts/_reversal_demo.ts";
import { loadConformance } from "../tests/_nf4_conformance.ts";
import { requestGpu } from "../lib/gpu/device.ts";
import { writeTinyLlama } from "../lib/testing/tiny_llama.ts";
import { parseFinetuneArgs } from "../lib/train/options.ts";
import { finetune, resolveFinetuneRun } from "../lib/train/trainer.ts";
import { TextGenerator } from "../lib/generate/text_generator.ts";
import { CHROMIUM, launchChromium, pageErrors } from "./_browser.ts";

/** The library as the page exposes it (`globalThis.qlora`). */
type Lib = typeof import("./qlora_webgpu.ts");

const root = join(import.meta.dirname!, "..");
const dist = join(root, "dist", "web");
const STEPS = 3;
/** The resume test checkpoints at this step, reloads during the next, and resumes. */
const CHECKPOINT = STEPS - 1;
const have = async (p: string) => await Deno.stat(p).then(() => true, () => false);
const ready = await have(CHROMIUM) && await have(join(dist, "index.html"));

/** Asserts the page's losses equal Deno's within 1e-4 relative, step by step. */
function assertLossesEqual(web: number[], deno: number[]): void {
  assert.equal(web.length, deno.length);
  web.forEach((l, i) =>
    assert.ok(Math.abs(l - deno[i]) <= 1e-4 * Math.abs(deno[i]), `step ${i + 1}: ${l} vs ${deno[i]}`)
  );
}

Deno.test({
  name:
    "web page: kernels compile in Chrome, NF4 bytes, in-page training equals Deno, adapter round trip, reload and resume",
  ignore: !ready,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const server = serveWeb(dist, 0);
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      await page.setViewport({ width: 920, height: 1000 });
      const errors = pageErrors(page);
      const bounded = <T>(p: Promise<T>) => Promise.race([p, errors]);
      await bounded(page.goto(`http://127.0.0.1:${server.addr.port}/`));
      await bounded(
        page.waitForFunction("globalThis.pageState?.ready || globalThis.pageState?.error", { timeout: 60_000 }),
      );
      assert.equal(await page.evaluate("pageState.error"), "");

      await t.step("every kernel compiles and makes its pipelines in Chrome", async () => {
        const r = await bounded(page.evaluate(async () => {
          // The library's device: the limits and features its kernels are dispatched with.
          const device: GPUDevice = (await (globalThis as unknown as { qlora: Lib }).qlora.requestGpu()).device;
          const failed: string[] = [];
          const skipped: string[] = [];
          let made = 0;
          for (const [name, code] of Object.entries((globalThis as unknown as { qlora: Lib }).qlora.WGSL)) {
            if (/^enable f16;/m.test(code) && !device.features.has("shader-f16")) {
              skipped.push(name);
              continue;
            }
            const module = device.createShaderModule({ code, label: name });
            const info = await module.getCompilationInfo();
            const errs = info.messages.filter((m) => m.type === "error").map((m) => m.message);
            if (errs.length) {
              failed.push(`${name}: ${errs.join("; ")}`);
              continue;
            }
            const constants: Record<string, number> = {};
            for (const m of code.matchAll(/^override (\w+): \w+;/gm)) {
              constants[m[1]] = Object.keys(constants).length / 16;
            }
            for (const m of code.matchAll(/@compute[^]*?fn (\w+)/g)) {
              try {
                await device.createComputePipelineAsync({
                  layout: "auto",
                  compute: { module, entryPoint: m[1], constants },
                });
                made++;
              } catch (e) {
                failed.push(`${name}.${m[1]}: ${(e as Error).message}`);
              }
            }
          }
          return { failed, skipped, made };
        }));
        console.log(`${r.made} pipelines made; skipped without shader-f16: ${r.skipped.join(", ") || "none"}`);
        assert.deepEqual(r.failed, []);
        assert.ok(r.made > 20);
      });

      await t.step("NF4 quantize/dequantize bytes equal the conformance vectors", async () => {
        const conf = await loadConformance();
        const got = await bounded(page.evaluate(async (cases) => {
          const q = (globalThis as unknown as { qlora: Lib }).qlora;
          const gpu = await q.requestGpu();
          const out = [];
          for (const c of cases) {
            const x = q.Tensor.fromArray(gpu, Float32Array.from(c.x), [c.x.length], { dtype: "f32", label: "x" });
            const qt = await q.quantizeNF4(gpu, x, { blocksize: c.blocksize, doubleQuant: c.double_quant });
            x.destroy();
            const host = await q.downloadQuantized(qt);
            const y = q.dequantizeNF4(qt);
            const deq = await y.toFloat32();
            y.destroy();
            q.freeQuantized(qt);
            out.push({
              packed: [...host.packed],
              absmax: c.double_quant ? [...host.state.absmax] : [...new Uint32Array(host.state.absmax.buffer)],
              absmax2: c.double_quant ? [...new Uint32Array(Float32Array.from(host.state.nested!.absmax).buffer)] : [],
              dequant: [...new Uint32Array(deq.buffer, deq.byteOffset, deq.length)],
            });
          }
          gpu.destroy?.();
          return out;
        }, conf.cases));
        const bits = (a: number[]) => [...new Uint32Array(Float32Array.from(a).buffer)];
        conf.cases.forEach((c, i) => {
          assert.deepEqual(got[i].packed, c.packed, `${c.name}: packed`);
          if (c.double_quant) {
            assert.deepEqual(got[i].absmax, c.absmax_q, `${c.name}: absmax_q`);
            assert.deepEqual(got[i].absmax2, bits(c.absmax2!), `${c.name}: absmax2`);
          } else assert.deepEqual(got[i].absmax, bits(c.absmax!), `${c.name}: absmax`);
          assert.deepEqual(got[i].dequant, bits(c.dequant), `${c.name}: dequant`);
        });
      });

      const dir = await Deno.makeTempDir();
      /** The losses of the same run under Deno, uninterrupted. */
      const uninterrupted: number[] = [];
      await t.step(`the tiny demo fine-tunes ${STEPS} steps in the page with Deno's losses`, async () => {
        await page.$eval(
          '#settings input[data-flag="steps"]',
          (e, n) => ((e as HTMLInputElement).value = n),
          String(STEPS),
        );
        await page.click("#start");
        await bounded(page.waitForFunction("pageState.done || pageState.error", { timeout: 480_000, polling: 500 }));
        assert.equal(await page.evaluate("pageState.error"), "");
        const web = await page.evaluate("pageState.losses") as number[];

        await writeTinyLlama(join(dir, "model"), reversalDemoModel());
        const args = [
          ...reversalDemoFlags(join(dir, "model"), join(root, "data", "reverse_train.jsonl"), join(dir, "out"), 300),
        ];
        const parsed = parseFinetuneArgs([...args, "--steps", String(STEPS)]);
        assert.ok(parsed.kind === "run");
        const sink = { writeSync: (b: Uint8Array) => b.length, isTerminal: () => false };
        await finetune(await requestGpu(), await resolveFinetuneRun(parsed), {
          sink,
          onStep: (m) => uninterrupted.push(m.loss),
        });
        assert.equal(web.length, STEPS);
        assertLossesEqual(web, uninterrupted);
      });

      await t.step("the downloaded adapter generates the same text under Deno", async () => {
        await bounded(page.waitForSelector("#downloadModel:not([hidden])", { timeout: 30_000 }));
        const files = await page.evaluate(async () => {
          const out: Record<string, number[]> = {};
          for (const id of ["downloadModel", "downloadConfig"]) {
            const a = document.getElementById(id) as HTMLAnchorElement;
            out[a.download] = [...new Uint8Array(await (await fetch(a.href)).arrayBuffer())];
          }
          return out;
        });
        const adapter = join(dir, "downloaded");
        await Deno.mkdir(adapter);
        for (const [name, bytes] of Object.entries(files)) {
          await Deno.writeFile(join(adapter, name), Uint8Array.from(bytes));
        }
        await page.click("#generate");
        await bounded(
          page.waitForFunction("document.getElementById('output').textContent !== ''", { timeout: 120_000 }),
        );
        const web = await page.$eval("#output", (e) => e.textContent);
        const g = await TextGenerator.load(await requestGpu(), join(dir, "model"), adapter);
        const deno = (await g.complete("abc=", { maxNewTokens: 8 })).text;
        g.destroy();
        assert.equal(web, deno);
      });

      await t.step("screenshot after training", async () => {
        await Deno.mkdir(join(root, "out", "web"), { recursive: true });
        await page.screenshot({ path: join(root, "out", "web", "page.png"), fullPage: true });
      });
      await t.step(
        `a reload during step ${STEPS} resumes from checkpoint-${CHECKPOINT} in OPFS with Deno's losses`,
        async () => {
          await page.$eval(
            '#settings input[data-flag="save-every"]',
            (e, n) => ((e as HTMLInputElement).value = n),
            String(CHECKPOINT),
          );
          await page.click("#start");
          // pageState.done is the last run's until the new one starts.
          await bounded(page.waitForFunction("!pageState.done || pageState.error", { timeout: 30_000, polling: 100 }));
          // Reload as soon as the checkpoint is in OPFS: the next step is then running, and the reload cuts it off.
          const saved = () =>
            page.evaluate(async (name) => {
              const q = (globalThis as unknown as { qlora: Lib }).qlora;
              const names = await Array.fromAsync(q.storage().readDir("/runs/web"), (e) => e.name).catch(() =>
                [] as string[]
              );
              return {
                saved: names.includes(name),
                done: (globalThis as unknown as { pageState: { done: boolean } }).pageState.done,
              };
            }, `checkpoint-${CHECKPOINT}`);
          const deadline = Date.now() + 480_000;
          for (let s = await bounded(saved()); !s.saved; s = await bounded(saved())) {
            assert.ok(!s.done && Date.now() < deadline, `checkpoint-${CHECKPOINT} was not saved`);
            await new Promise((r) => setTimeout(r, 250));
          }
          assert.equal(await page.evaluate("pageState.done"), false, "the run ended before the reload");
          await bounded(page.reload());
          await bounded(
            page.waitForFunction("globalThis.pageState?.ready || globalThis.pageState?.error", { timeout: 60_000 }),
          );
          assert.equal(await page.evaluate("pageState.error"), "");
          await bounded(page.waitForSelector("#resume:not([hidden])", { timeout: 10_000 }));
          const logged: string[] = [];
          page.on("console", (m) => void logged.push(m.text()));
          await page.click("#resume");
          await bounded(page.waitForFunction("pageState.done || pageState.error", { timeout: 300_000, polling: 500 }));
          assert.equal(await page.evaluate("pageState.error"), "");
          assert.ok(
            logged.some((l) => l.includes(`checkpoint-${CHECKPOINT} (step ${CHECKPOINT} of ${STEPS})`)),
            `no resume from checkpoint-${CHECKPOINT} in the page's log:\n${logged.join("\n")}`,
          );
          assertLossesEqual(await page.evaluate("pageState.losses") as number[], uninterrupted);
        },
      );
      await Deno.remove(dir, { recursive: true });
    } finally {
      await browser.close();
      await server.shutdown();
    }
  },
});
