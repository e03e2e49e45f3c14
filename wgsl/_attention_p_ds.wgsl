// Fragment of attention_backward_dq.wgsl and attention_backward_dkdv.wgsl (see scripts/embed_wgsl.ts): one
// recomputed score. Needs the kernels' bindings q, k, v, dOut, lse, delta, p and the override D4.

// (p, dS) for query row t of head h and key `key` of kv head kvh in sequence b:
//   p = exp(q.k * scale - lse),  dS = p (dOut.v - delta).
fn p_ds(b: u32, h: u32, kvh: u32, t: u32, key: u32) -> vec2<f32> {
  let qi = ((b * p.Tq + t) * p.nHeads + h) * D4;
  let kj = ((b * p.Tk + key) * p.nKvHeads + kvh) * D4;
  var sd = vec4<f32>(0.0);
  var dpd = vec4<f32>(0.0);
  for (var x = 0u; x < p.d4; x++) {
    sd += q[qi + x] * k[kj + x];
    dpd += dOut[qi + x] * v[kj + x];
  }
  let row = (b * p.nHeads + h) * p.Tq + t;
  let pr = exp((sd.x + sd.y + sd.z + sd.w) * p.scale - lse[row]);
  return vec2<f32>(pr, pr * (dpd.x + dpd.y + dpd.z + dpd.w - delta[row]));
}
