// The tiled f32 product of matmul_f32 and lora_up_backward. The includer declares the overrides BM, BN, BK, WG_X,
// WG_Y and the functions `tile_a(m, k, which)` and `tile_b(k, n, which)`: the elements of op(A) [M, K] and op(B)
// [K, N] of product `which` (a kernel's choice among its products; 0 when it has one).

#include "_tile_f32.wgsl"

// The BM × BN output tile at (m0, n0) of op(A)·op(B), 4×4 outputs per thread (thread `lid`'s, in `tile_fma`'s order):
// BK-slices of op(A) and op(B) are staged in the tiles, zero past M, N, K. `a_k_major` / `b_n_major`: A is stored
// [K, M] / B is stored [N, K], so consecutive threads load consecutive addresses of the stored matrix either way.
fn tile_product(
  m0: u32,
  n0: u32,
  M: u32,
  N: u32,
  K: u32,
  a_k_major: bool,
  b_n_major: bool,
  which: u32,
  lid: vec3<u32>,
) -> array<vec4<f32>, 4> {
  let threads = WG_X * WG_Y;
  let li = lid.y * WG_X + lid.x;
  var acc: array<vec4<f32>, 4>;
  for (var k0 = 0u; k0 < K; k0 += BK) {
    for (var e = li; e < BM * BK; e += threads) {
      let kk = select(e % BK, e / BM, a_k_major);
      let mm = select(e / BK, e % BM, a_k_major);
      var v = 0.0;
      if (m0 + mm < M && k0 + kk < K) {
        v = tile_a(m0 + mm, k0 + kk, which);
      }
      as_[kk * (BM / 4u) + mm / 4u][mm % 4u] = v;
    }
    for (var e = li; e < BN * BK; e += threads) {
      let kk = select(e / BN, e % BK, b_n_major);
      let nn = select(e % BN, e / BK, b_n_major);
      var v = 0.0;
      if (n0 + nn < N && k0 + kk < K) {
        v = tile_b(k0 + kk, n0 + nn, which);
      }
      bs[kk * (BN / 4u) + nn / 4u][nn % 4u] = v;
    }
    workgroupBarrier();
    tile_fma(&acc, lid);
    workgroupBarrier();
  }
  return acc;
}
