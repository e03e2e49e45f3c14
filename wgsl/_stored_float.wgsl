// Fragment (see scripts/embed_wgsl.ts): a frozen weight held as its checkpoint stores it, read as f32. The weight is
// bound as array<u32>; fmt (the kernel's override, see storedFormat in lib/kernels/_kernel.ts) is 0 for f32 (one
// value per word), 1 for bf16 and 2 for f16 (two values per word, the even index in the low half). bf16 → f32 is
// exact, and so is f16 → f32 as decoded here (no shader-f16; unpack2x16float may flush f16 subnormals to zero).

// The word holding element i.
fn stored_word(i: u32, fmt: u32) -> u32 {
  return select(i >> 1u, i, fmt == 0u);
}

// Element i's value, given its word.
fn stored_value(word: u32, i: u32, fmt: u32) -> f32 {
  if (fmt == 0u) {
    return bitcast<f32>(word);
  }
  let half = (word >> ((i & 1u) * 16u)) & 0xffffu;
  if (fmt == 1u) {
    return bitcast<f32>(half << 16u);
  }
  return f16_to_f32(half);
}

fn f16_to_f32(h: u32) -> f32 {
  let sign = (h & 0x8000u) << 16u;
  let e = (h >> 10u) & 0x1fu;
  let m = h & 0x3ffu;
  if (e == 0u) {
    // Subnormal (or zero): m · 2^-24, a normal f32.
    return bitcast<f32>(sign | 0x3f800000u) * f32(m) * bitcast<f32>(0x33800000u);
  }
  if (e == 31u) {
    return bitcast<f32>(sign | 0x7f800000u | (m << 13u));
  }
  return bitcast<f32>(sign | ((e + 112u) << 23u) | (m << 13u));
}
