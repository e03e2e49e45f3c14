// Fragment of matmul_f32.wgsl and qlinear_nf4.wgsl (see scripts/embed_wgsl.ts): the hash of the LoRA dropout
// mask, identical to keepHash in lib/kernels/dropout.ts. Element i is kept when keep_hash(seed, i) >= threshold.

fn lowbias32(v: u32) -> u32 {
  var x = v;
  x ^= x >> 16u;
  x *= 0x7feb352du;
  x ^= x >> 15u;
  x *= 0x846ca68bu;
  x ^= x >> 16u;
  return x;
}

fn keep_hash(seed: u32, i: u32) -> u32 {
  return lowbias32(i ^ lowbias32(seed));
}
