// Element offsets in a quantized tensor's `tables` buffer (lib/quant/quantized_tensor.ts): the 4-bit code table at
// 0, the signed dynamic map (code2) and then the second-level scales (absmax2). Mirrored in
// lib/kernels/nf4_quantize.ts.
const CODE2_AT: u32 = 16u;
const ABSMAX2_AT: u32 = 272u;
