// qlinear_nf4_f16: the gemm and dx entry points of qlinear_nf4.wgsl with f16 compute (needs shader-f16):
// x and deq(W) tiles are stored as f16 in workgroup memory and multiplied-added in f16 over each BK-long slice
// (NF4 codes times their f32 scale are rounded once to f16); the slice sums are added to f32 accumulators, so
// rounding error stays that of BK-term f16 sums (about 1e-3 relative) however long K is.
// The dequantization helpers are qlinear_nf4.wgsl's, from _qlinear_nf4_weight.wgsl.
//   gemm: out[M, N] = x[M, K] · deq(W)ᵀ (+ bias). Grid: x = ceil(N / BN), y = ceil(M / BM).
//   dx:   out[M, K] = x[M, N] · deq(W). Grid: x = ceil(K / BN), y = ceil(M / BM).
// Bindings and flags as in qlinear_nf4.wgsl:
//   0 x: f32   1 packed: u32   2 absmax: u32   3 absmax2: f32   4 code: f32[16]   5 code2: f32[256]
//   6 bias: f32[N]   7 out: f32 (read_write)   8 params: uniform Params

enable f16;

#include "_qlinear_nf4_weight.wgsl"

override BM: u32 = 64u;
override BN: u32 = 64u;
override BK: u32 = 16u;
override WG_X: u32 = BN / 4u;
override WG_Y: u32 = BM / 4u;

var<workgroup> xs: array<vec4<f16>, BK * BM / 4u>;
var<workgroup> ws: array<vec4<f16>, BK * BN / 4u>;

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
