// Rotary position embedding of q and k in place, in one dispatch, Hugging Face Llama convention (rotate_half:
// pairs (i, i + D/2)):
//   x1 = x[i], x2 = x[i + D/2];  x[i] = x1 cos - x2 sin;  x[i + D/2] = x2 cos + x1 sin
// with (cos, sin) = table[pos, i]; sin is negated for the inverse rotation (the backward pass).
// Row r (token t = r % T of sequence b = r / T) has pos = offset + t (+ offsets[b] when useOffsets is 1);
// a position past the table writes NaN so that the error shows.
// Bindings: q: [rows, qHeads, D] f32 and k: [rows, kHeads, D] f32 (read_write); table: [maxPos, D/2] vec2<f32>
//   (read: cos, sin); offsets: [B] u32 (read; any buffer when useOffsets is 0);
//   params: {rows, T, qHeads, kHeads, half = D/2, offset, useOffsets, maxPos, inverse: u32}.
// One (row, head, pair) per invocation, the qHeads + kHeads heads of a row in turn (q's first); linear index over
// a grid2d of workgroups.

override WG: u32 = 256;

struct Params {
  rows: u32,
  T: u32,
  qHeads: u32,
  kHeads: u32,
  half: u32,
  offset: u32,
  useOffsets: u32,
  maxPos: u32,
  inverse: u32,
}

@group(0) @binding(0) var<storage, read_write> q: array<f32>;
@group(0) @binding(1) var<storage, read_write> k: array<f32>;
@group(0) @binding(2) var<storage, read> table: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read> offsets: array<u32>;
@group(0) @binding(4) var<uniform> p: Params;

// The rotated pair of (x1, x2) at position pos, or NaNs past the table.
fn rotate(x1: f32, x2: f32, pos: u32, i: u32) -> vec2<f32> {
  if (pos >= p.maxPos) {
    // A var, not a constant: Chrome's compiler refuses a NaN constant expression.
    var nan_bits = 0x7fc00000u;
    let nan = bitcast<f32>(nan_bits);
    return vec2<f32>(nan, nan);
  }
  var cs = table[pos * p.half + i];
  if (p.inverse == 1u) {
    cs.y = -cs.y;
  }
  return vec2<f32>(x1 * cs.x - x2 * cs.y, x2 * cs.x + x1 * cs.y);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * WG;
  let heads = p.qHeads + p.kHeads;
  if (idx >= p.rows * heads * p.half) {
    return;
  }
  let i = idx % p.half;
  let rh = idx / p.half; // row * heads + head
  let row = rh / heads;
  let head = rh % heads;
  var pos = p.offset + row % p.T;
  if (p.useOffsets == 1u) {
    pos += offsets[row / p.T];
  }
  if (head < p.qHeads) {
    let base = (row * p.qHeads + head) * 2u * p.half + i;
    let y = rotate(q[base], q[base + p.half], pos, i);
    q[base] = y.x;
    q[base + p.half] = y.y;
  } else {
    let base = (row * p.kHeads + head - p.qHeads) * 2u * p.half + i;
    let y = rotate(k[base], k[base + p.half], pos, i);
    k[base] = y.x;
    k[base + p.half] = y.y;
  }
}
