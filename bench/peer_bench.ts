// Peer comparison in the same run: jax-js (npm:@jax-js/jax) doing the same work on Deno's WebGPU — a dense f32
// matmul, the gradient of a linear layer through its autodiff, and an Adam step fused by its `jit` — next to ours
// on the same adapter. jax-js owns its own device, so both sides are timed by the wall clock around a full sync
// (`timer: "wall"`); each figure is also a ratio to our dense matmul (GFLOP/s) or copy (GB/s) roofline.

import { blockUntilReady, defaultDevice, grad, init, jit, numpy as np } from "@jax-js/jax";
import { AdamW, type Gpu, Rng, Tensor } from "../mod.ts";
import { matmul } from "../lib/kernels/mod.ts";
import { type BenchCase, type BenchSize, benchSize, type BenchWork, registerDenoBench } from "./_cases.ts";

let _jax: Promise<boolean> | undefined;

/** Starts jax-js on WebGPU once; false (and a note on stderr) where it cannot. */
function jaxOnWebGpu(): Promise<boolean> {
  return _jax ??= (async () => {
    const devices = await init();
    if (!devices.includes("webgpu")) {
      console.error("jax-js: no WebGPU device; peer cases skipped");
      return false;
    }
    defaultDevice("webgpu");
    return true;
  })();
}

function jaxArray(data: Float32Array<ArrayBuffer>, shape: number[]): np.Array {
  return np.array(data).reshape(shape);
}

/** Matmul sizes and Adam parameter counts per bench size. */
function sizes(size: BenchSize): { n: number; params: number } {
  return size === "full" ? { n: 4096, params: 16 << 20 } : { n: 512, params: 1 << 20 };
}

/** The peer cases (skipped at run time where jax-js has no WebGPU device). */
export function cases(size: BenchSize): BenchCase[] {
  const { n, params } = sizes(size);
  const rng = new Rng(7);
  const a = rng.normalArray(n * n);
  const b = rng.normalArray(n * n);
  const flops = 2 * n ** 3;
  // Adam reads p, g, m, v and writes p, m, v: 7 f32 per parameter.
  const adamBytes = 7 * 4 * params;
  return [
    {
      name: "peer ours matmul f32",
      shape: [n, n, n],
      roofline: "matmul",
      setup: (gpu: Gpu): Promise<BenchWork> => {
        const ta = Tensor.fromArray(gpu, a, [n, n]);
        const tb = Tensor.fromArray(gpu, b, [n, n]);
        const out = Tensor.empty(gpu, [n, n]);
        return Promise.resolve({
          timer: "wall",
          flops,
          step: () => void matmul(ta, tb, { out }),
          dispose: () => [ta, tb, out].forEach((t) => t.destroy()),
        });
      },
    },
    {
      name: "peer jax-js matmul f32",
      shape: [n, n, n],
      roofline: "matmul",
      setup: async (): Promise<BenchWork> => {
        await jaxOnWebGpu();
        const ja = jaxArray(a, [n, n]);
        const jb = jaxArray(b, [n, n]);
        const mm = jit((x: np.Array, y: np.Array) => np.matmul(x, y));
        return {
          timer: "wall",
          flops,
          step: async () => {
            const c = mm(ja.ref, jb.ref);
            await blockUntilReady(c);
            c.dispose();
          },
          dispose: () => (ja.dispose(), jb.dispose()),
        };
      },
    },
    {
      name: "peer ours linear grad f32",
      shape: [n, n, n],
      roofline: "matmul",
      setup: (gpu: Gpu): Promise<BenchWork> => {
        // The same work as jax-js's grad below: y = x·w (forward), then dW = xᵀ·y (the gradient of sum(y²)/2).
        const x = Tensor.fromArray(gpu, a, [n, n]);
        const w = Tensor.fromArray(gpu, b, [n, n]);
        const y = Tensor.empty(gpu, [n, n]);
        const dw = Tensor.empty(gpu, [n, n]);
        return Promise.resolve({
          timer: "wall",
          flops: 2 * flops,
          step: () => {
            matmul(x, w, { out: y });
            matmul(x, y, { transA: true, out: dw });
          },
          dispose: () => [x, w, y, dw].forEach((t) => t.destroy()),
        });
      },
    },
    {
      name: "peer jax-js linear grad f32",
      shape: [n, n, n],
      roofline: "matmul",
      setup: async (): Promise<BenchWork> => {
        await jaxOnWebGpu();
        const x = jaxArray(a, [n, n]);
        const w = jaxArray(b, [n, n]);
        // d/dw of sum((x·w)²)/2 is xᵀ·(x·w): the forward product is needed (a loss linear in w would let jit
        // drop it), then one transposed product.
        const loss = (wt: np.Array, xt: np.Array) => np.square(np.matmul(xt, wt)).sum().mul(0.5);
        const dLoss = jit(grad(loss));
        return {
          timer: "wall",
          flops: 2 * flops,
          step: async () => {
            const dw = dLoss(w.ref, x.ref);
            await blockUntilReady(dw);
            dw.dispose();
          },
          dispose: () => (x.dispose(), w.dispose()),
        };
      },
    },
    {
      name: "peer ours adamw step",
      shape: [params],
      roofline: "copy",
      setup: (gpu: Gpu): Promise<BenchWork> => {
        const param = Tensor.fromArray(gpu, rng.normalArray(params), [params], { class: "weights" });
        const grad = Tensor.fromArray(gpu, rng.normalArray(params), [params]);
        const opt = new AdamW(gpu, [{ name: "p", param, grad }], { lr: 1e-3 });
        return Promise.resolve({
          timer: "wall",
          bytes: adamBytes,
          step: () => opt.step(),
          dispose: () => (opt.destroy(), param.destroy(), grad.destroy()),
        });
      },
    },
    {
      name: "peer jax-js adam step",
      shape: [params],
      roofline: "copy",
      setup: async (): Promise<BenchWork> => {
        await jaxOnWebGpu();
        let p = jaxArray(rng.normalArray(params), [params]);
        let m = np.zeros([params]);
        let v = np.zeros([params]);
        const g = jaxArray(rng.normalArray(params), [params]);
        let t = 0;
        // Adam with bias correction, fused into one kernel by jit (the update our adamw_f32 kernel does).
        const adam = jit((p0: np.Array, g0: np.Array, m0: np.Array, v0: np.Array, c1: np.Array, c2: np.Array) => {
          const m1 = m0.mul(0.9).add(g0.ref.mul(0.1));
          const v1 = v0.mul(0.999).add(g0.ref.mul(g0).mul(0.001));
          const step = m1.ref.div(c1).mul(1e-3).div(np.sqrt(v1.ref.div(c2)).add(1e-8));
          return [p0.sub(step), m1, v1];
        });
        return {
          timer: "wall",
          bytes: adamBytes,
          step: async () => {
            t++;
            const c1 = np.array(new Float32Array([1 - 0.9 ** t]));
            const c2 = np.array(new Float32Array([1 - 0.999 ** t]));
            [p, m, v] = adam(p, g.ref, m, v, c1, c2) as np.Array[];
            await blockUntilReady(p.ref);
          },
          dispose: () => [p, m, v, g].forEach((x) => x.dispose()),
        };
      },
    },
  ];
}

registerDenoBench(cases(benchSize()));
