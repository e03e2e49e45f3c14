// qlinear_nf4_f16: the gemm and dx entry points of qlinear_nf4.wgsl with f16 compute (needs shader-f16):
// x and deq(W) tiles are stored as f16 in workgroup memory and multiplied-added in f16 over each BK-long slice
// (NF4 codes times their f32 scale are rounded once to f16); the slice sums are added to f32 accumulators, so
// rounding error stays that of BK-term f16 sums (about 1e-3 relative) however long K is.
// Dequantization and the gemm and dx entry points are qlinear_nf4.wgsl's (_qlinear_nf4_weight.wgsl and
// _qlinear_nf4_tiled.wgsl), here with tile_t = f16 and an f16 tile_fma.
//   gemm: out[M, N] = x[M, K] · deq(W)ᵀ (+ bias) (+ s·XA·Bᵀ). Grid: x = ceil(N / BN), y = ceil(M / BM).
//   dx:   out[M, K] = x[M, N] · deq(W) (+ s·mask⊙(dYB·A)). Grid: x = ceil(K / BN), y = ceil(M / BM).
// The LoRA terms and the epilogue are f32. Bindings and flags as in qlinear_nf4.wgsl:
//   0 x: f32   1 packed: u32   2 absmax: u32   3 tables: f32   4 bias: f32[N]   5 lora_a: f32   6 lora_b: f32
//   7 out: f32 (read_write)   8 params: uniform Params

enable f16;

#include "_qlinear_nf4_weight.wgsl"

alias tile_t = f16;

override BM: u32 = 64u;
override BN: u32 = 64u;
override BK: u32 = 16u;
override WG_X: u32 = BN / 4u;
override WG_Y: u32 = BM / 4u;

var<workgroup> as_: array<vec4<f16>, BK * BM / 4u>;
var<workgroup> bs: array<vec4<f16>, BK * BN / 4u>;

// One BK slice: f16 products summed in f16, then added to the f32 accumulators.
fn tile_fma(acc: ptr<function, array<vec4<f32>, 4>>, lid: vec3<u32>) {
  var part: array<vec4<f16>, 4>;
  for (var kk = 0u; kk < BK; kk++) {
    let av = as_[kk * (BM / 4u) + lid.y];
    let bv = bs[kk * (BN / 4u) + lid.x];
    part[0] += av.x * bv;
    part[1] += av.y * bv;
    part[2] += av.z * bv;
    part[3] += av.w * bv;
  }
  for (var i = 0u; i < 4u; i++) {
    (*acc)[i] += vec4<f32>(part[i]);
  }
}

#include "_qlinear_nf4_tiled.wgsl"
