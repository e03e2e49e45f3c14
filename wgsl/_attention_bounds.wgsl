// Fragment of the attention_*.wgsl kernels that mask keys (see scripts/embed_wgsl.ts): their uniform Params and
// the per-sequence key bounds. Needs the kernel's bindings p, seqLens and qOffsets.

struct Params {
  B: u32,
  Tq: u32,
  Tk: u32,
  nHeads: u32,
  nKvHeads: u32,
  qOffset: u32,
  useLens: u32,
  useOffsets: u32,
  bq: u32, // = BQ, BK, D4: loop bounds read at run time, so that GL drivers do not unroll the loops
  bk: u32,
  d4: u32,
  scale: f32,
}

var<workgroup> bounds: vec2<u32>; // (valid keys, position of query row 0)

// (valid keys, position of query row 0) of sequence b, read once by invocation 0 and shared through workgroup
// memory. Call from uniform control flow.
fn key_bounds(b: u32, lid: u32) -> vec2<u32> {
  if (lid == 0u) {
    var n = p.Tk;
    if (p.useLens == 1u) {
      n = min(seqLens[b], p.Tk);
    }
    var q0 = p.qOffset;
    if (p.useOffsets == 1u) {
      q0 += qOffsets[b];
    }
    bounds = vec2<u32>(n, q0);
  }
  return workgroupUniformLoad(&bounds);
}
