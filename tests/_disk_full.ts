// A full disk without root tricks: while the returned handle is held, writes through any Deno.FsFile fail as
// Linux fails them (a short write, then "No space left on device (os error 28)", code ENOSPC) once `bytes` more
// bytes have been written in all. Disposing restores FsFile.write.

/** The error a full disk gives a write on an open file: it names no path. */
export function enospc(): Error {
  return Object.assign(new Error("No space left on device (os error 28)"), { code: "ENOSPC" });
}

/** Fails file writes after `bytes` more bytes, until disposed. */
export function diskFullAfter(bytes: number): Disposable {
  const write = Deno.FsFile.prototype.write;
  let left = bytes;
  Deno.FsFile.prototype.write = function (p: Uint8Array): Promise<number> {
    if (left === 0) return Promise.reject(enospc());
    const n = Math.min(left, p.byteLength);
    left -= n;
    return write.call(this, p.subarray(0, n));
  };
  return { [Symbol.dispose]: () => void (Deno.FsFile.prototype.write = write) };
}
