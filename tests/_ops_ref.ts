// Plain float64 references for the layer ops in lib/model/ops/ (llm.c style: slow, readable, checked by
// finite differences where they have a backward). Layouts match the GPU kernels: rows are contiguous.

/** RMSNorm over rows of `cols`. */
export function rmsNormRef(x: ArrayLike<number>, w: ArrayLike<number>, cols: number, eps: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length / cols; r++) {
    let ss = 0;
    for (let i = 0; i < cols; i++) ss += x[r * cols + i] ** 2;
    const rstd = 1 / Math.sqrt(ss / cols + eps);
    for (let i = 0; i < cols; i++) y[r * cols + i] = x[r * cols + i] * rstd * w[i];
  }
  return y;
}

/** Analytic RMSNorm input gradient. */
export function rmsNormBackwardRef(
  dy: ArrayLike<number>,
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  cols: number,
  eps: number,
): Float64Array {
  const dx = new Float64Array(x.length);
  for (let r = 0; r < x.length / cols; r++) {
    let ss = 0, dot = 0;
    for (let i = 0; i < cols; i++) {
      ss += x[r * cols + i] ** 2;
      dot += w[i] * dy[r * cols + i] * x[r * cols + i];
    }
    const rstd = 1 / Math.sqrt(ss / cols + eps);
    for (let i = 0; i < cols; i++) {
      dx[r * cols + i] = rstd * w[i] * dy[r * cols + i] - x[r * cols + i] * rstd ** 3 * dot / cols;
    }
  }
  return dx;
}

const sigmoid = (g: number) => 1 / (1 + Math.exp(-g));

/** SwiGLU: silu(gate) * up. */
export function swigluRef(gate: ArrayLike<number>, up: ArrayLike<number>): Float64Array {
  return Float64Array.from(gate, (g, i) => g * sigmoid(g) * up[i]);
}

/** Analytic SwiGLU gradients. */
export function swigluBackwardRef(
  dh: ArrayLike<number>,
  gate: ArrayLike<number>,
  up: ArrayLike<number>,
): { dGate: Float64Array; dUp: Float64Array } {
  const dGate = Float64Array.from(gate, (g, i) => dh[i] * up[i] * sigmoid(g) * (1 + g * (1 - sigmoid(g))));
  const dUp = Float64Array.from(gate, (g, i) => dh[i] * g * sigmoid(g));
  return { dGate, dUp };
}

/** Mean cross-entropy over rows whose label is not -100, and its gradient (softmax - onehot) / count. */
export function crossEntropyRef(
  logits: ArrayLike<number>,
  labels: ArrayLike<number>,
  vocab: number,
): { mean: number; sum: number; count: number; dLogits: Float64Array } {
  const rows = labels.length;
  let sum = 0, count = 0;
  for (const l of Array.from(labels)) if (l !== -100) count++;
  const dLogits = new Float64Array(rows * vocab);
  for (let r = 0; r < rows; r++) {
    if (labels[r] === -100) continue;
    let m = -Infinity;
    for (let i = 0; i < vocab; i++) m = Math.max(m, logits[r * vocab + i]);
    let s = 0;
    for (let i = 0; i < vocab; i++) s += Math.exp(logits[r * vocab + i] - m);
    const lse = m + Math.log(s);
    sum += lse - logits[r * vocab + labels[r]];
    for (let i = 0; i < vocab; i++) {
      dLogits[r * vocab + i] = (Math.exp(logits[r * vocab + i] - lse) - (i === labels[r] ? 1 : 0)) / count;
    }
  }
  return { mean: count ? sum / count : 0, sum, count, dLogits };
}

/**
 * RoPE in HF's rotate_half convention on rows `[B*T, nHeads*D]`; row r has position `offset + r % T`.
 * Angles use float64 here (the GPU table rounds them to f32 like transformers).
 */
export function ropeRef(
  x: ArrayLike<number>,
  invFreq: ArrayLike<number>,
  o: { T: number; nHeads: number; headDim: number; offset?: number; inverse?: boolean },
): Float64Array {
  const D = o.headDim, half = D / 2;
  const y = new Float64Array(x.length);
  const rows = x.length / (o.nHeads * D);
  for (let r = 0; r < rows; r++) {
    const pos = (o.offset ?? 0) + (r % o.T);
    for (let h = 0; h < o.nHeads; h++) {
      const base = (r * o.nHeads + h) * D;
      for (let i = 0; i < half; i++) {
        const a = pos * invFreq[i];
        const c = Math.cos(a), s = o.inverse ? -Math.sin(a) : Math.sin(a);
        const x1 = x[base + i], x2 = x[base + i + half];
        y[base + i] = x1 * c - x2 * s;
        y[base + i + half] = x2 * c + x1 * s;
      }
    }
  }
  return y;
}

/** Attention shape: q `[B, Tq, nHeads, D]`, k/v `[B, Tk, nKvHeads, D]`. */
export interface AttnShape {
  B: number;
  Tq: number;
  Tk: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  /** Valid keys per sequence (default Tk). */
  seqLens?: number[];
  /** Position of query row 0 of sequence b: qOffset + qOffsets[b]. */
  qOffset?: number;
  qOffsets?: number[];
}

function attnIndex(s: AttnShape) {
  const D = s.headDim, g = s.nHeads / s.nKvHeads;
  return {
    q: (b: number, t: number, h: number) => ((b * s.Tq + t) * s.nHeads + h) * D,
    k: (b: number, j: number, h: number) => ((b * s.Tk + j) * s.nKvHeads + Math.floor(h / g)) * D,
    valid: (b: number, t: number, j: number) =>
      j < (s.seqLens?.[b] ?? s.Tk) && j <= (s.qOffset ?? 0) + (s.qOffsets?.[b] ?? 0) + t,
  };
}

/** Causal GQA attention with key padding: out `[B, Tq, nHeads, D]`, lse `[B, nHeads, Tq]` (0 for rows with no keys). */
export function attentionRef(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  s: AttnShape,
): { out: Float64Array; lse: Float64Array } {
  const D = s.headDim, ix = attnIndex(s), scale = 1 / Math.sqrt(D);
  const out = new Float64Array(q.length);
  const lse = new Float64Array(s.B * s.nHeads * s.Tq);
  for (let b = 0; b < s.B; b++) {
    for (let h = 0; h < s.nHeads; h++) {
      for (let t = 0; t < s.Tq; t++) {
        const qi = ix.q(b, t, h);
        const sc: number[] = [];
        for (let j = 0; j < s.Tk; j++) {
          if (!ix.valid(b, t, j)) continue;
          let d = 0;
          for (let c = 0; c < D; c++) d += q[qi + c] * k[ix.k(b, j, h) + c];
          sc[j] = d * scale;
        }
        const js = Object.keys(sc).map(Number);
        if (js.length === 0) continue;
        const m = Math.max(...js.map((j) => sc[j]));
        let l = 0;
        for (const j of js) l += Math.exp(sc[j] - m);
        lse[(b * s.nHeads + h) * s.Tq + t] = m + Math.log(l);
        for (const j of js) {
          const p = Math.exp(sc[j] - m) / l;
          for (let c = 0; c < D; c++) out[qi + c] += p * v[ix.k(b, j, h) + c];
        }
      }
    }
  }
  return { out, lse };
}

/** Analytic attention gradients (softmax backward per query row), float64. */
export function attentionBackwardRef(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  dOut: ArrayLike<number>,
  s: AttnShape,
): { dq: Float64Array; dk: Float64Array; dv: Float64Array } {
  const D = s.headDim, ix = attnIndex(s), scale = 1 / Math.sqrt(D);
  const dq = new Float64Array(q.length), dk = new Float64Array(k.length), dv = new Float64Array(v.length);
  for (let b = 0; b < s.B; b++) {
    for (let h = 0; h < s.nHeads; h++) {
      for (let t = 0; t < s.Tq; t++) {
        const qi = ix.q(b, t, h);
        const js: number[] = [];
        const sc: number[] = [];
        for (let j = 0; j < s.Tk; j++) {
          if (!ix.valid(b, t, j)) continue;
          let d = 0;
          for (let c = 0; c < D; c++) d += q[qi + c] * k[ix.k(b, j, h) + c];
          js.push(j);
          sc.push(d * scale);
        }
        if (js.length === 0) continue;
        const m = Math.max(...sc);
        const e = sc.map((x) => Math.exp(x - m));
        const l = e.reduce((a, x) => a + x, 0);
        const p = e.map((x) => x / l);
        const dp = js.map((j) => {
          let d = 0;
          for (let c = 0; c < D; c++) d += dOut[qi + c] * v[ix.k(b, j, h) + c];
          return d;
        });
        const dot = p.reduce((a, pi, n) => a + pi * dp[n], 0);
        js.forEach((j, n) => {
          const ds = p[n] * (dp[n] - dot) * scale;
          const kj = ix.k(b, j, h);
          for (let c = 0; c < D; c++) {
            dv[kj + c] += p[n] * dOut[qi + c];
            dq[qi + c] += ds * k[kj + c];
            dk[kj + c] += ds * q[qi + c];
          }
        });
      }
    }
  }
  return { dq, dk, dv };
}

/** sum(f(x) * r): the scalar whose gradient is a backward pass with upstream gradient r. */
export function dotWith(y: ArrayLike<number>, r: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < y.length; i++) s += y[i] * r[i];
  return s;
}
