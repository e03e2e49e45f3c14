// Workgroup tiles of the tiled f32 products (matmul_f32, lora_up_backward, qlinear_nf4) and their inner loop.
// The includer declares the overrides BM, BN, BK. Tiles are stored k-major with 4 rows (columns) per
// vec4, as_[kk * BM/4 + mm/4][mm % 4], so each thread reads its 4 rows (4 columns) as one vec4.

var<workgroup> as_: array<vec4<f32>, BK * BM / 4u>;
var<workgroup> bs: array<vec4<f32>, BK * BN / 4u>;

// Adds the loaded BK-slice's products into thread `lid`'s 4×4 outputs, in order of the reduction index.
fn tile_fma(acc: ptr<function, array<vec4<f32>, 4>>, lid: vec3<u32>) {
  for (var kk = 0u; kk < BK; kk++) {
    let av = as_[kk * (BM / 4u) + lid.y];
    let bv = bs[kk * (BN / 4u) + lid.x];
    (*acc)[0] += av.x * bv;
    (*acc)[1] += av.y * bv;
    (*acc)[2] += av.z * bv;
    (*acc)[3] += av.w * bv;
  }
}
