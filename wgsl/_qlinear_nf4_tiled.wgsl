// Fragment of qlinear_nf4.wgsl and qlinear_nf4_f16.wgsl (see scripts/embed_wgsl.ts): the tiled gemm and dx entry
// points. Needs _qlinear_nf4_weight.wgsl, the kernel's overrides BM, BN, BK, WG_X, WG_Y, its tiles as_ and bs of
// vec4<tile_t>, tile_t (f32 or f16: the type x and deq(W) are rounded to in the tiles) and tile_fma.

// Loads rows [m0, m0+BM) × columns [c0, c0+BK) of the row-major [M, C] input into as_ (zeros outside).
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
    as_[kk * (BM / 4u) + mm / 4u][mm % 4u] = tile_t(v);
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
        bs[(kg + j) * (BN / 4u) + nn / 4u][nn % 4u] = tile_t(v[j / 4u][j % 4u]);
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
        store_y(gm, gn, acc[i][j]);
      }
    }
  }
}

@compute @workgroup_size(WG_X, WG_Y)
fn dx(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  _ = &bias; // same bind group layout as the other entry points
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
      bs[nn * (BN / 4u) + kg / 4u] = vec4<tile_t>(v[0]);
      bs[nn * (BN / 4u) + kg / 4u + 1u] = vec4<tile_t>(v[1]);
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
        store_dx(gm, gk, acc[i][j]);
      }
    }
  }
}
