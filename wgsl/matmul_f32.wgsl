// matmul_f32: C = alpha · op(A) · op(B) (+ C when accumulating), f32, tiled and register-blocked.
// op(A) is [M, K]: A is stored [M, K], or [K, M] when TRANS_A. op(B) is [K, N]: B is stored [K, N], or [N, K]
// when TRANS_B. Ragged M, N, K: out-of-range tile elements load as zero and are not stored.
// Bindings:
//   a: f32[M*K] (storage, read); b: [K*N] f32, bf16 or f16 as B_FMT says (storage, read as u32 words; a frozen
//   weight held as stored); c: [M, N] f32 (storage, read_write);
//   params: uniform Params (below).
// Dropout (DROP = 1: on A's elements, 2: on B's, 3: on alpha·op(A)·op(B) before accumulating) zeroes the element
// whose row-major index in that stored matrix is i unless keep_hash(seed, i) >= threshold, and scales kept ones
// by inv_keep; keep_hash matches lib/kernels/dropout.ts. When the matrix is bound from a row offset (a tensor split
// over several storage bindings), index_offset makes i the element's index in the whole tensor.
// Grid: x = ceil(N / BN) column tiles, y = ceil(M / BM) row tiles. Threads: (BN / 4) × (BM / 4), 4×4 outputs each.

struct Params {
  M: u32,
  N: u32,
  K: u32,
  accumulate: u32,
  alpha: f32,
  seed: u32,
  threshold: u32,
  inv_keep: f32,
  index_offset: u32,
}

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override DROP: u32 = 0u;
override B_FMT: u32 = 0u;
override BM: u32 = 64u;
override BN: u32 = 64u;
override BK: u32 = 16u;
override WG_X: u32 = BN / 4u;
override WG_Y: u32 = BM / 4u;

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<u32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

#include "_tile_product.wgsl"
#include "_stored_float.wgsl"
#include "_dropout_hash.wgsl"

fn dropped(v: f32, i: u32) -> f32 {
  return select(0.0, v * params.inv_keep, keep_hash(params.seed, i + params.index_offset) >= params.threshold);
}

// Element (m, k) of op(A) and (k, n) of op(B), with the operand's dropout.
fn tile_a(m: u32, k: u32, _which: u32) -> f32 {
  let i = select(m * params.K + k, k * params.M + m, TRANS_A);
  let v = a[i];
  if (DROP == 1u) {
    return dropped(v, i);
  }
  return v;
}

fn tile_b(k: u32, n: u32, _which: u32) -> f32 {
  let i = select(k * params.N + n, n * params.K + k, TRANS_B);
  let v = stored_value(b[stored_word(i, B_FMT)], i, B_FMT);
  if (DROP == 2u) {
    return dropped(v, i);
  }
  return v;
}

@compute @workgroup_size(WG_X, WG_Y)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let M = params.M;
  let N = params.N;
  let m0 = wid.y * BM;
  let n0 = wid.x * BN;
  let acc = tile_product(m0, n0, M, N, params.K, TRANS_A, TRANS_B, 0u, lid);
  for (var i = 0u; i < 4u; i++) {
    let gm = m0 + lid.y * 4u + i;
    for (var j = 0u; j < 4u; j++) {
      let gn = n0 + lid.x * 4u + j;
      if (gm < M && gn < N) {
        let o = gm * N + gn;
        var v = params.alpha * acc[i][j];
        if (DROP == 3u) {
          v = dropped(v, o);
        }
        if (params.accumulate != 0u) {
          v += c[o];
        }
        c[o] = v;
      }
    }
  }
}
