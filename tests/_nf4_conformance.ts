// Loads bitsandbytes' public NF4 vectors in place from the shared checkout (../shared, beside the repository).

/** One conformance case (see shared/conformance/README.md). */
export interface ConformanceCase {
  name: string;
  blocksize: number;
  double_quant: boolean;
  x: number[];
  packed: number[];
  absmax?: number[];
  absmax_q?: number[];
  offset?: number;
  absmax2?: number[];
  code2?: number[];
  dequant: number[];
}

/** The whole file. */
export interface Conformance {
  nf4_code: number[];
  dynamic_code_signed: number[];
  cases: ConformanceCase[];
}

/** Reads `../shared/conformance/nf4_bnb_public.json` relative to the repository root. */
export async function loadConformance(): Promise<Conformance> {
  const url = new URL("../../shared/conformance/nf4_bnb_public.json", import.meta.url);
  return JSON.parse(await Deno.readTextFile(url));
}
