// TypeScript reference of the AdamW step (lib/kernels/adamw_f32.ts), shared by the optimizer and kernel tests.

import type { AdamWStep } from "../lib/kernels/mod.ts";

const f = Math.fround;

export interface Hyper {
  lr: number;
  b1: number;
  b2: number;
  eps: number;
  wd: number;
}

/** TypeScript reference of one AdamW step, in float32 arithmetic as the kernel does it. */
export function refStep(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, h: Hyper, t: number): void {
  const decay = f(1 - h.lr * h.wd);
  const stepSize = f(h.lr / (1 - h.b1 ** t));
  const isb = f(1 / Math.sqrt(1 - h.b2 ** t));
  const [b1, b2, omb1, omb2] = [f(h.b1), f(h.b2), f(1 - h.b1), f(1 - h.b2)];
  for (let i = 0; i < p.length; i++) {
    m[i] = f(f(b1 * m[i]) + f(omb1 * g[i]));
    v[i] = f(f(b2 * v[i]) + f(omb2 * f(g[i] * g[i])));
    const denom = f(f(f(Math.sqrt(v[i])) * isb) + f(h.eps));
    p[i] = f(f(p[i] * decay) - f(stepSize * f(m[i] / denom)));
  }
}

/** The kernel wrappers' form of `h` at step `t`. */
export function asStep(h: Hyper, t: number): AdamWStep {
  return { lr: h.lr, betas: [h.b1, h.b2], eps: h.eps, weightDecay: h.wd, t };
}
