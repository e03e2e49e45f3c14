// qlinear_nf4_f16: the gemm and dx entry points of qlinear_nf4.wgsl with f16 compute (needs shader-f16):
// x and deq(W) tiles are stored as f16 in workgroup memory and multiplied-added in f16 over each BK-long slice
// (NF4 codes times their f32 scale are rounded once to f16); the slice sums are added to f32 accumulators, so
// rounding error stays that of BK-term f16 sums (about 1e-3 relative) however long K is.
// WGSL has no includes: the dequantization helpers below repeat qlinear_nf4.wgsl's and must change with them.
//   gemm: out[M, N] = x[M, K] · deq(W)ᵀ (+ bias). Grid: x = ceil(N / BN), y = ceil(M / BM).
//   dx:   out[M, K] = x[M, N] · deq(W). Grid: x = ceil(K / BN), y = ceil(M / BM).
// Bindings and flags as in qlinear_nf4.wgsl:
//   0 x: f32   1 packed: u32   2 absmax: u32   3 absmax2: f32   4 code: f32[16]   5 code2: f32[256]
//   6 bias: f32[N]   7 out: f32 (read_write)   8 params: uniform Params

enable f16;

struct Params {
  M: u32,
  N: u32,
  K: u32,
  block_shift: u32, // log2(blocksize): blocksizes are powers of two, and shifts beat integer division
  offset: f32,
  flags: u32,
}

const FLAG_BIAS: u32 = 1u;
const FLAG_DOUBLE_QUANT: u32 = 2u;
const FLAG_ALIGNED: u32 = 4u;

override BM: u32 = 64u;
override BN: u32 = 64u;
override BK: u32 = 16u;
override WG_X: u32 = BN / 4u;
override WG_Y: u32 = BM / 4u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> packed: array<u32>;
@group(0) @binding(2) var<storage, read> absmax: array<u32>;
@group(0) @binding(3) var<storage, read> absmax2: array<f32>;
@group(0) @binding(4) var<storage, read> code: array<f32>;
@group(0) @binding(5) var<storage, read> code2: array<f32>;
@group(0) @binding(6) var<storage, read> bias: array<f32>;
@group(0) @binding(7) var<storage, read_write> out: array<f32>;
@group(0) @binding(8) var<uniform> params: Params;

// Byte -> (value of its high nibble, value of its low nibble): one lookup per two weights.
var<workgroup> lut2: array<vec2<f32>, 256>;
var<workgroup> xs: array<vec4<f16>, BK * BM / 4u>;
var<workgroup> ws: array<vec4<f16>, BK * BN / 4u>;

fn load_lut(li: u32, threads: u32) {
  for (var i = li; i < 256u; i += threads) {
    lut2[i] = vec2<f32>(code[i >> 4u], code[i & 15u]);
  }
  workgroupBarrier();
}

fn block_scale(blk: u32) -> f32 {
  if ((params.flags & FLAG_DOUBLE_QUANT) != 0u) {
    let q = (absmax[blk >> 2u] >> ((blk & 3u) * 8u)) & 0xffu;
    return code2[q] * absmax2[blk >> 8u] + params.offset;
  }
  return bitcast<f32>(absmax[blk]);
}

// Bytes hold the even value in the high nibble; swapping puts value j of a word at bits 4j and back.
fn swap_nibbles(w: u32) -> u32 {
  return ((w >> 4u) & 0x0f0f0f0fu) | ((w & 0x0f0f0f0fu) << 4u);
}

// The code-table values of the 8 nibbles of a packed word (byte j holds values 2j, 2j+1), as two vec4.
fn codes8(word: u32) -> mat2x4<f32> {
  let b = (vec4<u32>(word) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xffu);
  return mat2x4<f32>(vec4<f32>(lut2[b.x], lut2[b.y]), vec4<f32>(lut2[b.z], lut2[b.w]));
}

// Values k .. k+7 of row n of deq(W), zero past the row end (k < K).
fn dequant8(n: u32, k: u32) -> mat2x4<f32> {
  let e0 = n * params.K + k;
  let wi = e0 >> 3u;
  let b0 = e0 >> params.block_shift;
  let s0 = block_scale(b0);
  if ((params.flags & FLAG_ALIGNED) != 0u) {
    return codes8(packed[wi]) * s0;
  }
  var word = packed[wi];
  let o = (e0 & 7u) * 4u;
  if (o != 0u) {
    // Shift in value order (nibbles swapped so value j sits at bits 4j), then back to the packed order.
    let next = min(wi + 1u, arrayLength(&packed) - 1u);
    word = swap_nibbles((swap_nibbles(word) >> o) | (swap_nibbles(packed[next]) << (32u - o)));
  }
  let c = codes8(word);
  let b1 = min((e0 + 7u) >> params.block_shift, (params.N * params.K - 1u) >> params.block_shift);
  var s1 = s0;
  var split = 8u;
  if (b1 != b0) {
    s1 = block_scale(b1);
    split = (b1 << params.block_shift) - e0;
  }
  let j0 = vec4<u32>(0u, 1u, 2u, 3u);
  let j1 = j0 + vec4<u32>(4u);
  let v0 = c[0] * select(vec4<f32>(s1), vec4<f32>(s0), j0 < vec4<u32>(split));
  let v1 = c[1] * select(vec4<f32>(s1), vec4<f32>(s0), j1 < vec4<u32>(split));
  let end = vec4<u32>(params.K - k);
  return mat2x4<f32>(select(vec4<f32>(0.0), v0, j0 < end), select(vec4<f32>(0.0), v1, j1 < end));
}

fn bias_of(n: u32) -> f32 {
  if ((params.flags & FLAG_BIAS) != 0u) {
    return bias[n];
  }
  return 0.0;
}

// One BK slice: f16 products summed in f16, then added to the f32 accumulators.
fn tile_fma(acc: ptr<function, array<vec4<f32>, 4>>, lid: vec3<u32>) {
  var part: array<vec4<f16>, 4>;
  for (var kk = 0u; kk < BK; kk++) {
    let av = xs[kk * (BM / 4u) + lid.y];
    let bv = ws[kk * (BN / 4u) + lid.x];
    part[0] += av.x * bv;
    part[1] += av.y * bv;
    part[2] += av.z * bv;
    part[3] += av.w * bv;
  }
  for (var i = 0u; i < 4u; i++) {
    (*acc)[i] += vec4<f32>(part[i]);
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
    xs[kk * (BM / 4u) + mm / 4u][mm % 4u] = f16(v);
  }
}

@compute @workgroup_size(WG_X, WG_Y)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let li = lid.y * WG_X + lid.x;
  load_lut(li, WG_X * WG_Y);
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
      var v = mat2x4<f32>();
      if (gn < N && gk < K) {
        v = dequant8(gn, gk);
      }
      for (var j = 0u; j < 8u; j++) {
        ws[(kg + j) * (BN / 4u) + nn / 4u][nn % 4u] = f16(v[j / 4u][j % 4u]);
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
  _ = &bias; // same bind group layout as gemm
  let li = lid.y * WG_X + lid.x;
  load_lut(li, WG_X * WG_Y);
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
      var v = mat2x4<f32>();
      if (gn < N && gk < K) {
        v = dequant8(gn, gk);
      }
      ws[nn * (BN / 4u) + kg / 4u] = vec4<f16>(v[0]);
      ws[nn * (BN / 4u) + kg / 4u + 1u] = vec4<f16>(v[1]);
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
