// Fragment of nf4_quantize.wgsl and nf4_double_quant.wgsl (see scripts/embed_wgsl.ts): an exact reciprocal,
// in integer arithmetic so that every backend rounds it the same way.

// Correctly rounded 1/a for a normal a in [2^-126, 2^125] given as bits (the reciprocal stays normal).
fn recip_rn(abits: u32) -> f32 {
  let e = abits >> 23u;
  let m = (abits & 0x7fffffu) | 0x800000u;
  if (m == 0x800000u) {
    return bitcast<f32>((254u - e) << 23u);
  }
  // q = floor(2^47 / m): 24 quotient bits, the first always 1 since 2^23 < m < 2^24.
  var r = 0x1000000u - m;
  var q = 1u;
  for (var k = 0u; k < 23u; k++) {
    r = r << 1u;
    let ge = r >= m;
    q = (q << 1u) | select(0u, 1u, ge);
    r = select(r, r - m, ge);
  }
  // 2r == m cannot happen (m is not a power of two), so no ties.
  q += select(0u, 1u, 2u * r > m);
  // 1/a = q * 2^(103 - e') with q in [2^23, 2^24]; q == 2^24 carries into the exponent.
  return bitcast<f32>(((253u - e) << 23u) + (q - 0x800000u));
}
