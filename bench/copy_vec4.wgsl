// copy_vec4: dst[i] = src[i] for i < n, 16-byte loads and stores, ITEMS per thread (strided by the grid so that
// neighbouring threads touch neighbouring vectors). The bandwidth roofline of bench/_roofline.ts, which builds
// its pipeline with the raw device API (bench-only: not embedded in the package).
// Bindings:
//   src: [n] vec4<u32> (storage, read)
//   dst: [n] vec4<u32> (storage, read_write)
//   u:   vec4<u32> (uniform)  (n, _, _, _)

override WG: u32 = 256u;
override ITEMS: u32 = 4u;

@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;
@group(0) @binding(2) var<uniform> u: vec4<u32>;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) t: u32,
) {
  let base = (wid.x + wid.y * nwg.x) * WG * ITEMS + t;
  for (var k = 0u; k < ITEMS; k++) {
    let i = base + k * WG;
    if (i < u.x) {
      dst[i] = src[i];
    }
  }
}
