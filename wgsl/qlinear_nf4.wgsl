// qlinear_nf4: products with a 4-bit blockwise-quantized weight W [N, K] (layout: lib/quant/quantized_tensor.ts),
// dequantized tile by tile in registers/workgroup memory; deq(W) is never written to memory.
// Entry points (all f32 compute and accumulation):
//   gemv: out[M, N] = x[M, K] · deq(W)ᵀ (+ bias) (+ s·XA·Bᵀ), M <= MROWS <= 16 rows; one workgroup per NR rows
//         of W, its threads stream the rows' packed u32 words (8 values each) and exchange partial sums once
//         through workgroup memory. Grid: ceil(N / NR) (2-D split).
//   gemm: out[M, N] = x[M, K] · deq(W)ᵀ (+ bias) (+ s·XA·Bᵀ), tiled BM × BN, 4×4 outputs per thread.
//         Grid: x = ceil(N / BN), y = ceil(M / BM).
//   dx:   out[M, K] = x[M, N] · deq(W) (+ s·mask⊙(dYB·A)) (x is dY), tiled BM × BN over [M, K].
//         Grid: x = ceil(K / BN), y = ceil(M / BM).
// Every entry point adds into out instead with FLAG_ACCUMULATE (a residual; dX summed over projections).
// Bindings (8 storage buffers, WebGPU's default per-stage limit):
//   0 x: f32 (storage, read)                1 packed: u32[ceil(N*K/8)] 4-bit codes (storage, read)
//   2 absmax: u32, f32 bits[nb] or u8 codes packed 4 per word with double quantization (storage, read)
//   3 tables: f32[16 code | 256 code2 | ceil(nb/256) absmax2] (storage, read; code2, absmax2 read only with
//     FLAG_DOUBLE_QUANT)                   4 bias: f32[N] (storage, read; read only with FLAG_BIAS)
//   5 lora_a: XA [M, r] (gemv, gemm) or dYB [M, r] (dx)   6 lora_b: B [N, r] (gemv, gemm) or A [r, K] (dx)
//     (storage, read; read only with FLAG_LORA)            7 out: f32 (storage, read_write)   8 params: uniform
// FLAG_ALIGNED (K % 8 == 0): every 8-value group of a row is one u32 word in one block; otherwise groups are
// reassembled from two words and may straddle two blocks. Flags are uniform (not overrides) so that few pipeline
// variants exist: GL drivers compile each one on first use, which is slow on llvmpipe.

#include "_qlinear_nf4_weight.wgsl"

alias tile_t = f32;

override BM: u32 = 64u;
override BN: u32 = 64u;
override BK: u32 = 16u;
override WG_X: u32 = BN / 4u;
override WG_Y: u32 = BM / 4u;
override GEMV_WG: u32 = 32u;
override MROWS: u32 = 1u; // gemv: rows bucket (1, 4 or 16), params.M <= MROWS
const MAX_ROWS: u32 = 16u;
const NR: u32 = 4u; // rows of W per gemv workgroup (the 4 lanes of its accumulators)

#include "_tile_f32.wgsl"
// gemv partial sums of 4 rows of x: red[i * GEMV_WG + thread][r]. Small on purpose: WebGPU zero-initializes
// workgroup memory, and GL drivers compile that initializer in time linear in its element count.
var<workgroup> red: array<vec4<f32>, 4u * GEMV_WG>;

#include "_qlinear_nf4_tiled.wgsl"

// x[base .. base+7], zero from index `valid` on; branch-free (small code: GL drivers compile it faster).
fn load_x8(base: u32, valid: u32) -> mat2x4<f32> {
  let last = vec4<u32>(arrayLength(&x) - 1u);
  let j0 = vec4<u32>(0u, 1u, 2u, 3u);
  let j1 = j0 + vec4<u32>(4u);
  let i0 = min(vec4<u32>(base) + j0, last);
  let i1 = min(vec4<u32>(base) + j1, last);
  let v0 = vec4<f32>(x[i0.x], x[i0.y], x[i0.z], x[i0.w]);
  let v1 = vec4<f32>(x[i1.x], x[i1.y], x[i1.z], x[i1.w]);
  let n = vec4<u32>(valid);
  return mat2x4<f32>(select(vec4<f32>(0.0), v0, j0 < n), select(vec4<f32>(0.0), v1, j1 < n));
}

// Row n of deq(W) at k .. k+7 (zero for n >= N).
fn gemv_row8(n: u32, k: u32) -> mat2x4<f32> {
  if (n >= params.N) {
    return mat2x4<f32>();
  }
  return dequant8(n, k);
}

@compute @workgroup_size(GEMV_WG)
fn gemv(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  load_lut(li, GEMV_WG);
  let N = params.N;
  let K = params.K;
  let n0 = (wid.x + wid.y * nwg.x) * NR;
  // acc[m][r]: row m of x times row n0 + r of deq(W).
  var acc: array<vec4<f32>, MAX_ROWS>;
  for (var g = li; g < (K + 7u) / 8u; g += GEMV_WG) {
    let k = g * 8u;
    var w: array<mat2x4<f32>, NR>;
    for (var r = 0u; r < NR; r++) {
      w[r] = gemv_row8(n0 + r, k);
    }
    for (var m = 0u; m < MROWS; m++) {
      // Rows past M read nothing (zero valid values).
      let xv = load_x8(m * K + k, select(0u, min(K - k, 8u), m < params.M));
      acc[m] += vec4<f32>(
        dot(xv[0], w[0][0]) + dot(xv[1], w[0][1]),
        dot(xv[0], w[1][0]) + dot(xv[1], w[1][1]),
        dot(xv[0], w[2][0]) + dot(xv[1], w[2][1]),
        dot(xv[0], w[3][0]) + dot(xv[1], w[3][1]),
      );
    }
  }
  // Exchange through workgroup memory 4 rows of x at a time; thread (m, r) then sums the GEMV_WG partials of
  // its output.
  for (var m0 = 0u; m0 < MROWS; m0 += 4u) {
    for (var i = 0u; i < 4u; i++) {
      red[i * GEMV_WG + li] = acc[min(m0 + i, MAX_ROWS - 1u)];
    }
    workgroupBarrier();
    let m = m0 + li / 4u;
    let n = n0 + li % 4u;
    if (li < 16u && m < params.M && n < N) {
      var sum = 0.0;
      for (var t = 0u; t < GEMV_WG; t++) {
        sum += red[(li / 4u) * GEMV_WG + t][li % 4u];
      }
      store_y(m, n, sum);
    }
    workgroupBarrier();
  }
}
