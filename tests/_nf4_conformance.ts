// Loads bitsandbytes' public NF4 vectors from tests/fixtures/nf4_bnb_public.json.

/** One conformance case (see tests/fixtures/README.md). */
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

/** Reads `tests/fixtures/nf4_bnb_public.json`. */
export async function loadConformance(): Promise<Conformance> {
  const url = new URL("./fixtures/nf4_bnb_public.json", import.meta.url);
  return JSON.parse(await Deno.readTextFile(url));
}
