// Private file helpers: whole writes and exact positioned reads on a Deno.FsFile.

/** Writes every byte (a single `write` may write fewer). */
export async function _writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.byteLength) done += await file.write(bytes.subarray(done));
}

/**
 * Reads exactly `length` bytes at `offset`; `what` names the file and item in the error when the file ends early
 * (it shrank after its header was checked).
 */
export async function _readAt(file: Deno.FsFile, offset: number, length: number, what: string): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  await file.seek(offset, Deno.SeekMode.Start);
  let done = 0;
  while (done < length) {
    const n = await file.read(out.subarray(done));
    if (n === null) throw new Error(`${what}: file ends after ${offset + done} bytes, expected ${offset + length}`);
    done += n;
  }
  return out;
}

/** Whether a path exists (file or folder). */
export async function _exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}
