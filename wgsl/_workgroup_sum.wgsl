// Fragment (see scripts/embed_wgsl.ts): the sum of one f32 per invocation over a workgroup of WG invocations (WG a
// power of two, the kernel's override), by tree reduction in workgroup memory.

var<workgroup> red: array<f32, WG>;

// The sum of v over the workgroup (lid: local invocation index), also left in red[0]. Call from uniform control
// flow; red is free again only after the next barrier.
fn workgroup_sum(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      red[lid] += red[lid + s];
    }
    workgroupBarrier();
  }
  return red[0];
}
