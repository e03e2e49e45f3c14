// The platform layer: only lib/platform/deno*.ts touches Deno or Node; paths, CRC-32 and argument parsing match
// node:path, node:zlib and node:util; the memory storage behaves as the Deno one for what the library does.

import assert from "node:assert/strict";
import * as nodePath from "node:path";
import { parseArgs } from "node:util";
import { crc32 as zlibCrc32 } from "node:zlib";
import { crc32 } from "../lib/platform/crc32.ts";
import { basename, dirname, join, normalize, resolve } from "../lib/platform/path.ts";
import { parseStrictArgs } from "../lib/platform/parse_args.ts";
import { memoryStorage } from "../lib/platform/memory.ts";
import { denoStorage } from "../lib/platform/deno.ts";
import { setStorage, type Storage } from "../lib/platform/storage.ts";
import { writeFileAtomic } from "../lib/io/atomic_write.ts";
import { SafetensorsFile } from "../lib/io/safetensors_reader.ts";
import { writeSafetensors } from "../lib/io/safetensors_writer.ts";
import { readStateFile, writeStateFile } from "../lib/optim/state_file.ts";

async function* walk(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) yield* walk(p);
    else if (p.endsWith(".ts")) yield p;
  }
}

Deno.test("platform: only lib/platform/deno*.ts uses Deno.* or node:* (doc examples aside)", async () => {
  const offenders: string[] = [];
  const root = new URL("../lib", import.meta.url).pathname;
  for await (const p of walk(root)) {
    if (/\/lib\/platform\/deno[^/]*\.ts$/.test(p)) continue;
    (await Deno.readTextFile(p)).split("\n").forEach((l, i) => {
      if (/^\s*(\*|\/\/)/.test(l)) return;
      if (/\bDeno\.|["']node:/.test(l)) offenders.push(`${p.slice(root.length - 3)}:${i + 1}: ${l.trim()}`);
    });
  }
  assert.deepEqual(offenders, []);
});

Deno.test("platform: paths as node:path (POSIX) gives them", () => {
  const cases = ["a//b/../c/", "/../x", "", ".", "..", "a/./b", "/", "../../a", "a/b/../../..", "/a/b/"];
  for (const c of cases) assert.equal(normalize(c), nodePath.posix.normalize(c).replace(/(.)\/$/, "$1"), c);
  for (const parts of [["a", "b"], ["/a", "../b"], ["", "x"], ["out", "checkpoint-2/"], [""]]) {
    assert.equal(join(...parts), nodePath.posix.join(...parts).replace(/(.)\/$/, "$1"), parts.join(","));
    assert.equal(resolve(...parts), nodePath.posix.resolve(...parts), parts.join(","));
  }
  for (const p of ["/a/b/c.txt", "c.txt", "/a", "/", "a/b/"]) {
    assert.equal(dirname(p), nodePath.posix.dirname(p), p);
    assert.equal(basename(p), nodePath.posix.basename(p), p);
  }
});

Deno.test("platform: crc32 equals zlib's, whole and continued", () => {
  const b = new Uint8Array(3000).map((_, i) => (i * 131 + 7) & 255);
  assert.equal(crc32(b), zlibCrc32(b));
  assert.equal(crc32(b.subarray(1000), crc32(b.subarray(0, 1000))), zlibCrc32(b));
  assert.equal(crc32(new Uint8Array(0)), 0);
});

Deno.test("platform: strict argument parsing gives node:util parseArgs's values and messages", () => {
  const options = { lr: { type: "string" }, f: { type: "boolean" }, help: { type: "boolean", short: "h" } } as const;
  const cases = [
    ["--lr"],
    ["x"],
    ["--f=1"],
    ["-z"],
    ["--lr", "--f"],
    ["--lr=3", "--lr", "4"],
    ["-h"],
    ["--f", "--f"],
    ["--", "x"],
    ["--lr=", "--f"],
    ["--bogus"],
    ["--lr", "-5"],
    ["--lr", "x", "--f"],
    ["--"],
    ["-"],
  ];
  const run = (f: () => unknown) => {
    try {
      return JSON.stringify(f());
    } catch (e) {
      return (e as Error).message;
    }
  };
  for (const args of cases) {
    const node = run(() => ({ ...parseArgs({ args, options, strict: true, allowPositionals: false }).values }));
    assert.equal(run(() => parseStrictArgs(args, options)), node, args.join(" "));
  }
});

async function withStorage(fs: Storage, fn: () => Promise<void>): Promise<void> {
  const before = setStorage(fs);
  try {
    await fn();
  } finally {
    setStorage(before);
  }
}

Deno.test("platform: memory storage holds safetensors, state files and atomic writes like the disk", async () => {
  const dir = await Deno.makeTempDir();
  const results: unknown[] = [];
  for (const [fs, base] of [[denoStorage()!, dir], [memoryStorage(), "/m"]] as const) {
    await withStorage(fs, async () => {
      await fs.mkdir(`${base}/sub`, { recursive: true });
      await writeFileAtomic(`${base}/sub/a.json`, "{}");
      await writeFileAtomic(`${base}/sub/a.json`, '{"x":1}');
      await writeSafetensors(`${base}/t.safetensors`, [{
        name: "w",
        dtype: "U8",
        shape: [3],
        data: new Uint8Array([1, 2, 3]),
      }]);
      using f = await SafetensorsFile.open(`${base}/t.safetensors`);
      await writeStateFile(`${base}/s.bin`, { kind: "t", step: 1, pageSize: 64, params: [] }, new Uint8Array([5, 6]));
      const names = (await Array.fromAsync(fs.readDir(base), (e) => e.name)).sort();
      const missing = await fs.readFile(`${base}/nope`).then(() => null, (e) => fs.isNotFound(e));
      results.push({
        a: await fs.readTextFile(`${base}/sub/a.json`),
        w: [...await f.read("w")],
        size: f.size,
        state: [...(await readStateFile(`${base}/s.bin`)).payload],
        names,
        missing,
      });
    });
  }
  assert.deepEqual(results[1], results[0]);
  await Deno.remove(dir, { recursive: true });
});
