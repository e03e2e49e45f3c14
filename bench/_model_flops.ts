// Model FLOPs of a LoRA training step, shared by the model and host benches (the formula is in model_bench.ts's
// header).

/** A model shape to bench. */
export interface ModelShape {
  name: string;
  layers: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  intermediate: number;
  vocab: number;
  B: number;
  T: number;
}

/** Model FLOPs of one forward + backward step with LoRA rank `r` (see the header). */
export function modelFlops(s: ModelShape, r: number): number {
  const D = s.hidden / s.heads;
  const q = s.heads * D;
  const kv = s.kvHeads * D;
  const proj = [[q, s.hidden], [kv, s.hidden], [kv, s.hidden], [s.hidden, q], [s.intermediate, s.hidden], [
    s.intermediate,
    s.hidden,
  ], [s.hidden, s.intermediate]];
  const tokens = s.B * s.T;
  const linear = s.layers * proj.reduce((a, [n, k]) => a + 2 * n * k, 0) + 2 * s.vocab * s.hidden;
  const lora = s.layers * proj.reduce((a, [n, k]) => a + 2 * r * (n + k), 0);
  const attn = s.layers * s.B * 4 * D * s.heads * (s.T * (s.T + 1)) / 2;
  return tokens * (2 * linear + 4 * lora) + 3.5 * attn;
}
