// lora_up_backward: the two products of the backward of a LoRA up projection `Y += s·XA·Bᵀ`, in one dispatch:
//   dYB = dY · B                        [M, r]  (B: [N, r]; reduced over N)
//   dB  = alpha · dYᵀ · XA (+ dB)       [N, r]  (XA: [M, r]; reduced over M; added into dB when accumulating)
// The grid's first `dyb_tiles` workgroups tile dYB, the rest tile dB. Each output sums its products in order of the
// reduction index, BK at a time, one accumulator per output, as matmul_f32 does: the same bits as the two matmuls.
// Rows of M past one storage binding come in ranges (dY, XA, dYB bound from the range's first row); every range
// after the first accumulates its part of dB.
// Bindings:
//   dy: [M, N] f32 (read); b: [N, r] f32 (read); xa: [M, r] f32 (read); dyb: [M, r] f32 (read_write);
//   db: [N, r] f32 (read_write); params: uniform Params (below).
// Threads: (BN / 4) × (BM / 4) per workgroup, 4×4 outputs each; workgroup index wid.x + wid.y * nwg.x (grid2d).

struct Params {
  M: u32,
  N: u32,
  R: u32,
  accumulate: u32,
  alpha: f32,
  dyb_tiles: u32,
}

override BM: u32 = 64u;
override BN: u32 = 16u;
override BK: u32 = 16u;
override WG_X: u32 = BN / 4u;
override WG_Y: u32 = BM / 4u;

@group(0) @binding(0) var<storage, read> dy: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> xa: array<f32>;
@group(0) @binding(3) var<storage, read_write> dyb: array<f32>;
@group(0) @binding(4) var<storage, read_write> db: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

#include "_tile_product.wgsl"

// Product `which`: 0 is dYB (op(A) = dY [M, N], op(B) = B [N, r]), 1 is dB (op(A) = dYᵀ [N, M], dY read
// transposed; op(B) = XA [M, r]).
fn tile_a(m: u32, k: u32, which: u32) -> f32 {
  return dy[select(m * params.N + k, k * params.N + m, which == 1u)];
}

fn tile_b(k: u32, n: u32, which: u32) -> f32 {
  if (which == 1u) {
    return xa[k * params.R + n];
  }
  return b[k * params.R + n];
}

@compute @workgroup_size(WG_X, WG_Y)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
) {
  let M = params.M;
  let N = params.N;
  let R = params.R;
  let col_tiles = (R + BN - 1u) / BN;
  let tile = wid.x + wid.y * nwg.x;
  let to_db = tile >= params.dyb_tiles;
  let t = select(tile, tile - params.dyb_tiles, to_db);
  let rows = select(M, N, to_db);
  if (t >= ((rows + BM - 1u) / BM) * col_tiles) {
    return;
  }
  let m0 = (t / col_tiles) * BM;
  let n0 = (t % col_tiles) * BN;
  let acc = tile_product(m0, n0, rows, R, select(N, M, to_db), to_db, false, select(0u, 1u, to_db), lid);
  for (var i = 0u; i < 4u; i++) {
    let gm = m0 + lid.y * 4u + i;
    for (var j = 0u; j < 4u; j++) {
      let gn = n0 + lid.x * 4u + j;
      if (gm < rows && gn < R) {
        let o = gm * R + gn;
        if (to_db) {
          var v = params.alpha * acc[i][j];
          if (params.accumulate != 0u) {
            v += db[o];
          }
          db[o] = v;
        } else {
          dyb[o] = acc[i][j];
        }
      }
    }
  }
}
