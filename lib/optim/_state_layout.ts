// Where each parameter's optimizer state lives: segments of at most one page, packed into pages in order.

/** A run of one parameter's elements whose state sits contiguously in one page. */
export interface Segment {
  /** Index of the parameter. */
  param: number;
  /** First element of the parameter in this segment (a multiple of 256). */
  elemOffset: number;
  /** Elements in this segment. */
  n: number;
  /** `n` rounded up to a multiple of 256: the stride between the state arrays in the segment. */
  cap: number;
  /** The page. */
  page: number;
  /** Byte offset in the page (a multiple of 256, so it can be bound). */
  byteOffset: number;
  /** Bytes of state (a multiple of 256). */
  bytes: number;
}

/** The state layout of a set of parameters. */
export interface StateLayout {
  segments: Segment[];
  /** Segments of each page. */
  byPage: Segment[][];
  pageCount: number;
}

const BLOCK = 256;

/**
 * Splits parameters of `sizes` elements in segments of state and packs them into pages (next fit: a segment
 * never straddles two pages). `bytesPerBlock` is the state size of 256 elements.
 */
export function layoutState(sizes: readonly number[], pageSize: number, bytesPerBlock: number): StateLayout {
  const maxCap = Math.floor(pageSize / bytesPerBlock) * BLOCK;
  if (maxCap === 0) {
    throw new Error(`Page size ${pageSize} B is too small: 256 elements of optimizer state need ${bytesPerBlock} B`);
  }
  const segments: Segment[] = [];
  let page = 0;
  let offset = 0;
  sizes.forEach((size, param) => {
    for (let e = 0; e < size; e += maxCap) {
      const n = Math.min(maxCap, size - e);
      const cap = Math.ceil(n / BLOCK) * BLOCK;
      const bytes = Math.ceil((cap / BLOCK) * bytesPerBlock / 256) * 256;
      if (offset + bytes > pageSize) {
        page++;
        offset = 0;
      }
      segments.push({ param, elemOffset: e, n, cap, page, byteOffset: offset, bytes });
      offset += bytes;
    }
  });
  const pageCount = segments.length ? page + 1 : 0;
  const byPage: Segment[][] = Array.from({ length: pageCount }, () => []);
  for (const s of segments) byPage[s.page].push(s);
  return { segments, byPage, pageCount };
}
