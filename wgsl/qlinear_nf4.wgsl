// qlinear_nf4: products with a 4-bit blockwise-quantized weight W [N, K] (layout: lib/quant/quantized_tensor.ts),
// dequantized tile by tile in registers/workgroup memory; deq(W) is never written to memory.
// Entry points (all f32 compute and accumulation):
//   gemv: out[M, N] = x[M, K] · deq(W)ᵀ (+ bias), M = MROWS <= 16 rows; one workgroup per NR rows of W, its
//         threads stream the rows' packed u32 words and reduce in workgroup memory. Grid: ceil(N / NR) (2-D split).
//   gemm: out[M, N] = x[M, K] · deq(W)ᵀ (+ bias), tiled BM × BN, 4×4 outputs per thread.
//         Grid: x = ceil(N / BN), y = ceil(M / BM).
//   dx:   out[M, K] = x[M, N] · deq(W) (x is dY), tiled BM × BN over [M, K]. Grid: x = ceil(K / BN), y = ceil(M / BM).
// Bindings:
//   0 x: f32 (storage, read)                1 packed: u32[ceil(N*K/8)] 4-bit codes (storage, read)
//   2 absmax: u32, f32 bits[nb] or u8 codes packed 4 per word when DOUBLE_QUANT (storage, read)
//   3 absmax2: f32[ceil(nb/256)] (storage, read)  4 code: f32[16] (storage, read)  5 code2: f32[256] (storage, read)
//   6 bias: f32[N] (storage, read; read only when HAS_BIAS)   7 out: f32 (storage, read_write)   8 params: uniform
// ALIGNED (K % 8 == 0): every 8-value group of a row is one u32 word in one block; otherwise groups are
// reassembled from two words and may straddle two blocks.

struct Params {
  M: u32,
  N: u32,
  K: u32,
  blocksize: u32,
  offset: f32,
}

override DOUBLE_QUANT: bool = true;
override ALIGNED: bool = true;
override HAS_BIAS: bool = false;
override BM: u32 = 64u;
override BN: u32 = 64u;
override BK: u32 = 16u;
override WG_X: u32 = BN / 4u;
override WG_Y: u32 = BM / 4u;
override GEMV_WG: u32 = 64u;
override MROWS: u32 = 1u;
const MAX_ROWS: u32 = 16u;
const NR: u32 = 4u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> packed: array<u32>;
@group(0) @binding(2) var<storage, read> absmax: array<u32>;
@group(0) @binding(3) var<storage, read> absmax2: array<f32>;
@group(0) @binding(4) var<storage, read> code: array<f32>;
@group(0) @binding(5) var<storage, read> code2: array<f32>;
@group(0) @binding(6) var<storage, read> bias: array<f32>;
@group(0) @binding(7) var<storage, read_write> out: array<f32>;
@group(0) @binding(8) var<uniform> params: Params;

var<workgroup> lut: array<f32, 16>;
// Tiles stored with 4 consecutive rows/columns per vec4 (see matmul_f32.wgsl).
var<workgroup> xs: array<vec4<f32>, BK * BM / 4u>;
var<workgroup> ws: array<vec4<f32>, BK * BN / 4u>;
var<workgroup> red: array<f32, GEMV_WG * MAX_ROWS>;

fn load_lut(li: u32) {
  if (li < 16u) {
    lut[li] = code[li];
  }
  workgroupBarrier();
}

fn block_scale(blk: u32) -> f32 {
  if (DOUBLE_QUANT) {
    let q = (absmax[blk >> 2u] >> ((blk & 3u) * 8u)) & 0xffu;
    return code2[q] * absmax2[blk >> 8u] + params.offset;
  }
  return bitcast<f32>(absmax[blk]);
}

// Bytes hold the even value in the high nibble; swapping puts value j of a word at bits 4j.
fn swap_nibbles(w: u32) -> u32 {
  return ((w >> 4u) & 0x0f0f0f0fu) | ((w & 0x0f0f0f0fu) << 4u);
}

// Dequantized values e0 .. e0+7 of the flattened weight (e0 < N*K; values past a row end are the caller's to mask).
fn dequant8(e0: u32) -> array<vec4<f32>, 2> {
  let wi = e0 >> 3u;
  var nib = swap_nibbles(packed[wi]);
  let b0 = e0 / params.blocksize;
  let s0 = block_scale(b0);
  var s1 = s0;
  var split = 8u;
  if (!ALIGNED) {
    let o = (e0 & 7u) * 4u;
    if (o != 0u) {
      let next = min(wi + 1u, arrayLength(&packed) - 1u);
      nib = (nib >> o) | (swap_nibbles(packed[next]) << (32u - o));
    }
    let b1 = min((e0 + 7u) / params.blocksize, (params.N * params.K - 1u) / params.blocksize);
    if (b1 != b0) {
      s1 = block_scale(b1);
      split = b1 * params.blocksize - e0;
    }
  }
  var v: array<vec4<f32>, 2>;
  for (var j = 0u; j < 8u; j++) {
    v[j / 4u][j % 4u] = lut[(nib >> (4u * j)) & 15u] * select(s1, s0, j < split);
  }
  return v;
}

fn bias_of(n: u32) -> f32 {
  if (HAS_BIAS) {
    return bias[n];
  }
  return 0.0;
}

fn tile_fma(acc: ptr<function, array<vec4<f32>, 4>>, lid: vec3<u32>) {
  for (var kk = 0u; kk < BK; kk++) {
    let av = xs[kk * (BM / 4u) + lid.y];
    let bv = ws[kk * (BN / 4u) + lid.x];
    (*acc)[0] += av.x * bv;
    (*acc)[1] += av.y * bv;
    (*acc)[2] += av.z * bv;
    (*acc)[3] += av.w * bv;
  }
}

// Loads rows [m0, m0+BM) × columns [c0, c0+BK) of the row-major [M, C] input into xs (zeros outside).
fn load_x_tile(li: u32, m0: u32, c0: u32, C: u32) {
  for (var e = li; e < BM * BK; e += WG_X * WG_Y) {
    let kk = e % BK;
    let mm = e / BK;
    let gm = m0 + mm;
    let gc = c0 + kk;
    var v = 0.0;
    if (gm < params.M && gc < C) {
      v = x[gm * C + gc];
    }
    xs[kk * (BM / 4u) + mm / 4u][mm % 4u] = v;
  }
}

@compute @workgroup_size(WG_X, WG_Y)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let li = lid.y * WG_X + lid.x;
  load_lut(li);
  let N = params.N;
  let K = params.K;
  let m0 = wid.y * BM;
  let n0 = wid.x * BN;
  var acc: array<vec4<f32>, 4>;
  for (var k0 = 0u; k0 < K; k0 += BK) {
    load_x_tile(li, m0, k0, K);
    // W tile: BN rows × BK columns, one 8-value group per thread, stored k-major.
    for (var g = li; g < BN * BK / 8u; g += WG_X * WG_Y) {
      let nn = g / (BK / 8u);
      let kg = (g % (BK / 8u)) * 8u;
      let gn = n0 + nn;
      let gk = k0 + kg;
      var v: array<vec4<f32>, 2>;
      if (gn < N && gk < K) {
        v = dequant8(gn * K + gk);
      }
      for (var j = 0u; j < 8u; j++) {
        ws[(kg + j) * (BN / 4u) + nn / 4u][nn % 4u] = select(0.0, v[j / 4u][j % 4u], gk + j < K);
      }
    }
    workgroupBarrier();
    tile_fma(&acc, lid);
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let gm = m0 + lid.y * 4u + i;
    for (var j = 0u; j < 4u; j++) {
      let gn = n0 + lid.x * 4u + j;
      if (gm < params.M && gn < N) {
        out[gm * N + gn] = acc[i][j] + bias_of(gn);
      }
    }
  }
}

@compute @workgroup_size(WG_X, WG_Y)
fn dx(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  _ = &bias; // same bind group layout as gemm and gemv
  let li = lid.y * WG_X + lid.x;
  load_lut(li);
  let N = params.N;
  let K = params.K;
  let m0 = wid.y * BM;
  let c0 = wid.x * BN;
  var acc: array<vec4<f32>, 4>;
  for (var n0 = 0u; n0 < N; n0 += BK) {
    load_x_tile(li, m0, n0, N);
    // W tile: BK rows × BN columns; a row's 8-value group is 2 consecutive vec4 of the tile.
    for (var g = li; g < BN * BK / 8u; g += WG_X * WG_Y) {
      let nn = g / (BN / 8u);
      let kg = (g % (BN / 8u)) * 8u;
      let gn = n0 + nn;
      let gk = c0 + kg;
      var v: array<vec4<f32>, 2>;
      if (gn < N && gk < K) {
        v = dequant8(gn * K + gk);
      }
      for (var j = 0u; j < 8u; j++) {
        if (gk + j >= K) {
          v[j / 4u][j % 4u] = 0.0;
        }
      }
      ws[nn * (BN / 4u) + kg / 4u] = v[0];
      ws[nn * (BN / 4u) + kg / 4u + 1u] = v[1];
    }
    workgroupBarrier();
    tile_fma(&acc, lid);
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let gm = m0 + lid.y * 4u + i;
    for (var j = 0u; j < 4u; j++) {
      let gk = c0 + lid.x * 4u + j;
      if (gm < params.M && gk < K) {
        out[gm * K + gk] = acc[i][j];
      }
    }
  }
}

@compute @workgroup_size(GEMV_WG)
fn gemv(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  load_lut(li);
  let N = params.N;
  let K = params.K;
  let n0 = (wid.x + wid.y * nwg.x) * NR;
  var acc: array<array<f32, MAX_ROWS>, NR>;
  for (var g = li; g < (K + 7u) / 8u; g += GEMV_WG) {
    let k = g * 8u;
    let full = k + 8u <= K;
    var w: array<array<vec4<f32>, 2>, NR>;
    for (var r = 0u; r < NR; r++) {
      if (n0 + r < N) {
        w[r] = dequant8((n0 + r) * K + k);
        for (var j = 0u; j < 8u; j++) {
          if (k + j >= K) {
            w[r][j / 4u][j % 4u] = 0.0;
          }
        }
      }
    }
    for (var m = 0u; m < MROWS; m++) {
      let xb = m * K + k;
      var x0 = vec4<f32>(0.0);
      var x1 = vec4<f32>(0.0);
      if (full) {
        x0 = vec4<f32>(x[xb], x[xb + 1u], x[xb + 2u], x[xb + 3u]);
        x1 = vec4<f32>(x[xb + 4u], x[xb + 5u], x[xb + 6u], x[xb + 7u]);
      } else {
        for (var j = 0u; k + j < K; j++) {
          if (j < 4u) {
            x0[j] = x[xb + j];
          } else {
            x1[j - 4u] = x[xb + j];
          }
        }
      }
      for (var r = 0u; r < NR; r++) {
        acc[r][m] += dot(x0, w[r][0]) + dot(x1, w[r][1]);
      }
    }
  }
  for (var r = 0u; r < NR; r++) {
    for (var m = 0u; m < MROWS; m++) {
      red[m * GEMV_WG + li] = acc[r][m];
    }
    workgroupBarrier();
    for (var s = GEMV_WG / 2u; s > 0u; s >>= 1u) {
      if (li < s) {
        for (var m = 0u; m < MROWS; m++) {
          red[m * GEMV_WG + li] += red[m * GEMV_WG + li + s];
        }
      }
      workgroupBarrier();
    }
    let n = n0 + r;
    if (li < MROWS && n < N) {
      out[li * N + n] = red[li * GEMV_WG] + bias_of(n);
    }
    workgroupBarrier();
  }
}
