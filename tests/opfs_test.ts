// OPFS storage on an in-memory stand-in with OPFS's commit rule: a writable stream's writes land in the file only
// when it is closed, so what a killed tab left is what was synced.

import assert from "node:assert/strict";
import { type OpfsDirectory, type OpfsFile, opfsStorage, type OpfsWritable } from "../lib/platform/opfs.ts";

/** A file whose writable streams write to a swap copy, committed on close (as Chrome does). */
function fakeFile(): OpfsFile {
  let data = new Uint8Array();
  return {
    kind: "file",
    getFile: () => Promise.resolve(new Blob([data])),
    createWritable: (options) => {
      let swap = options?.keepExistingData ? data.slice() : new Uint8Array();
      const w: OpfsWritable = {
        write: (c) => {
          if (c.type === "truncate") swap = swap.slice(0, c.size);
          else {
            const next = new Uint8Array(Math.max(swap.length, c.position + c.data.length));
            next.set(swap);
            next.set(c.data, c.position);
            swap = next;
          }
          return Promise.resolve();
        },
        close: () => Promise.resolve(void (data = swap)),
      };
      return Promise.resolve(w);
    },
  };
}

function fakeDirectory(): OpfsDirectory {
  const entries = new Map<string, OpfsDirectory | OpfsFile>();
  const get = <T extends OpfsDirectory | OpfsFile>(name: string, create: boolean | undefined, make: () => T) => {
    if (!entries.has(name)) {
      if (!create) return Promise.reject(new DOMException(name, "NotFoundError"));
      entries.set(name, make());
    }
    return Promise.resolve(entries.get(name) as T);
  };
  return {
    kind: "directory",
    getDirectoryHandle: (name, o) => get(name, o?.create, fakeDirectory),
    getFileHandle: (name, o) => get(name, o?.create, fakeFile),
    removeEntry: (name) => Promise.resolve(void entries.delete(name)),
    entries: async function* () {
      yield* entries;
    },
  };
}

Deno.test("opfs storage: a synced write is in the file and the handle keeps writing after it", async () => {
  const fs = await opfsStorage(fakeDirectory());
  const enc = new TextEncoder();
  const f = await fs.openWrite("/m.jsonl");
  await f.write(enc.encode("1\n"));
  await f.sync();
  await f.write(enc.encode("2\n"));
  // A tab reloaded now keeps the synced line only.
  assert.equal(await fs.readTextFile("/m.jsonl"), "1\n");
  await f.sync();
  assert.equal(await fs.readTextFile("/m.jsonl"), "1\n2\n");
  f.close();
  const g = await fs.openWrite("/m.jsonl", { append: true });
  await g.write(enc.encode("3\n"));
  await g.sync();
  g.close();
  assert.equal(await fs.readTextFile("/m.jsonl"), "1\n2\n3\n");
});
