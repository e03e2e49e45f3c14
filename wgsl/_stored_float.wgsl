// Fragment (see scripts/embed_wgsl.ts): a frozen weight held as its checkpoint stores it, read as f32. The weight is
// bound as array<u32>; fmt (the kernel's override, see storedFormat in lib/kernels/_kernel.ts) is 0 for f32 (one
// value per word), 1 for bf16 and 2 for f16 (two values per word, the even index in the low half). bf16 → f32 is
// exact; f16 goes through unpack2x16float, which needs no shader-f16.

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
  return unpack2x16float(half).x;
}
