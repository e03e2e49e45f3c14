// Fragment (see scripts/embed_wgsl.ts): workgroup sum and max that may be called back to back (each starts with a
// barrier, since red may still be read from the previous reduction). Include after _workgroup_sum.wgsl.

fn reduceSum(lid: u32, v: f32) -> f32 {
  workgroupBarrier();
  return workgroup_sum(lid, v);
}

fn reduceMax(lid: u32, v: f32) -> f32 {
  workgroupBarrier();
  red[lid] = v;
  workgroupBarrier();
  for (var k = WG / 2u; k > 0u; k >>= 1u) {
    if (lid < k) {
      red[lid] = max(red[lid], red[lid + k]);
    }
    workgroupBarrier();
  }
  return red[0];
}
