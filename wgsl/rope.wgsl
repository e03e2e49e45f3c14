// Rotary position embedding in place, Hugging Face Llama convention (rotate_half: pairs (i, i + D/2)):
//   x1 = x[i], x2 = x[i + D/2];  x[i] = x1 cos - x2 sin;  x[i + D/2] = x2 cos + x1 sin
// with (cos, sin) = table[pos, i]; sin is negated for the inverse rotation (the backward pass).
// Row r (token t = r % T of sequence b = r / T) has pos = offset + t (+ offsets[b] when useOffsets is 1);
// a position past the table writes NaN so that the error shows.
// Bindings: x: [rows, nHeads, D] f32 (read_write); table: [maxPos, D/2] vec2<f32> (read: cos, sin);
//   offsets: [B] u32 (read; any buffer when useOffsets is 0);
//   params: {rows, T, nHeads, half = D/2, offset, useOffsets, maxPos, inverse: u32}.
// One (row, head, pair) per invocation; linear index over a grid2d of workgroups.

override WG: u32 = 256;

struct Params {
  rows: u32,
  T: u32,
  nHeads: u32,
  half: u32,
  offset: u32,
  useOffsets: u32,
  maxPos: u32,
  inverse: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> table: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> offsets: array<u32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * WG;
  if (idx >= p.rows * p.nHeads * p.half) {
    return;
  }
  let i = idx % p.half;
  let rh = idx / p.half; // row * nHeads + head
  let row = rh / p.nHeads;
  var pos = p.offset + row % p.T;
  if (p.useOffsets == 1u) {
    pos += offsets[row / p.T];
  }
  let base = rh * 2u * p.half + i;
  if (pos >= p.maxPos) {
    // A var, not a constant: Chrome's compiler refuses a NaN constant expression.
    var nan_bits = 0x7fc00000u;
    let nan = bitcast<f32>(nan_bits);
    x[base] = nan;
    x[base + p.half] = nan;
    return;
  }
  var cs = table[pos * p.half + i];
  if (p.inverse == 1u) {
    cs.y = -cs.y;
  }
  let x1 = x[base];
  let x2 = x[base + p.half];
  x[base] = x1 * cs.x - x2 * cs.y;
  x[base + p.half] = x2 * cs.x + x1 * cs.y;
}
