// Embedding lookup (frozen table): out[t, c] = table[ids[t], c], for the ids inside this dispatch's vocabulary
// range [vocabStart, vocabStart + vocabCount); a table too large for one binding is bound range by range.
// Bindings: table: [vocabCount, H] f32, bf16 or f16 as TABLE_FMT says (read as u32 words; a range of the [V, H]
//   table); ids: [n] u32 (read);
//   out: [n, H] f32 (write); params: {n: u32, H: u32, vocabStart: u32, vocabCount: u32}.
// One output element per invocation; linear index over a grid2d of workgroups.

override WG: u32 = 256;
override TABLE_FMT: u32 = 0u;

#include "_stored_float.wgsl"

struct Params {
  n: u32,
  cols: u32,
  vocabStart: u32,
  vocabCount: u32,
}

@group(0) @binding(0) var<storage, read> table: array<u32>;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.n * p.cols) {
    return;
  }
  let t = i / p.cols;
  let c = i - t * p.cols;
  let row = ids[t] - p.vocabStart; // wraps to a huge value below the range
  if (row < p.vocabCount) {
    let e = row * p.cols + c;
    out[i] = stored_value(table[stored_word(e, TABLE_FMT)], e, TABLE_FMT);
  }
}
