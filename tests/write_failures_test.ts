// A full disk (see _disk_full.ts) or a failed flush loses nothing: every error names the file, no temporary file
// is left, the old file stays; quantize and merge outputs appear only when complete and never replace a folder
// with the user's files in it.

import assert from "node:assert/strict";
import { join } from "node:path";
import { diskFullAfter, enospc } from "./_disk_full.ts";
import { loraFixture } from "./_lora_fixture.ts";
import { writeFileAtomic } from "../lib/io/atomic_write.ts";
import { SafetensorsWriter } from "../lib/io/safetensors_writer.ts";
import { readStateFile, writeStateFile } from "../lib/optim/state_file.ts";
import { MetricsWriter } from "../lib/train/metrics.ts";
import { quantizeFolder } from "../lib/io/quantize_folder.ts";
import { mergeAdapterFolder } from "../lib/merge/merge_folder.ts";
import { requestGpu } from "../lib/gpu/device.ts";

const names = async (dir: string) => [...await Array.fromAsync(Deno.readDir(dir))].map((e) => e.name).sort();

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** `fn` runs with a disk that fills after `bytes` bytes; its rejection must name `path` and say ENOSPC. */
async function rejectsFull(bytes: number, path: string, fn: () => Promise<unknown>): Promise<void> {
  using _full = diskFullAfter(bytes);
  const e = await fn().then(() => null, (e: Error) => e);
  assert.ok(e, `no error writing ${path}`);
  assert.ok(e.message.startsWith(`${path}: No space left on device (os error 28)`), e.message);
  assert.equal((e as { code?: string }).code, "ENOSPC");
}

Deno.test("writeFileAtomic: a full disk names the file, keeps the old one and leaves no temporary file", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "loss.svg");
    await writeFileAtomic(path, "old");
    await rejectsFull(3, path, () => writeFileAtomic(path, "a longer new text"));
    assert.deepEqual(await names(dir), ["loss.svg"]);
    assert.equal(await Deno.readTextFile(path), "old");
  });
});

Deno.test("optimizer state: flushed before the rename; a full disk names the file and leaves no temporary file", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "optimizer.bin");
    const header = { kind: "t", step: 1, pageSize: 64, params: [] };
    const syncData = Deno.FsFile.prototype.syncData;
    let synced = 0;
    Deno.FsFile.prototype.syncData = function () {
      synced++;
      return syncData.call(this);
    };
    try {
      await writeStateFile(path, header, new Uint8Array([1, 2, 3]));
    } finally {
      Deno.FsFile.prototype.syncData = syncData;
    }
    assert.equal(synced, 1);
    await rejectsFull(20, path, () => writeStateFile(path, { ...header, step: 2 }, new Uint8Array(100)));
    assert.deepEqual(await names(dir), ["optimizer.bin"]);
    assert.equal((await readStateFile(path)).header.step, 1);
  });
});

Deno.test("safetensors writer: a full disk in the header, a tensor or the flush names the file, leaves nothing", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "adapter_model.safetensors");
    const specs = [{ name: "a", dtype: "U8" as const, shape: [64] }];
    await rejectsFull(10, path, () => SafetensorsWriter.create(path, specs));
    assert.deepEqual(await names(dir), []);
    await rejectsFull(100, path, async () => {
      const w = await SafetensorsWriter.create(path, specs);
      await w.write("a", new Uint8Array(64));
    });
    assert.deepEqual(await names(dir), []);
    const w = await SafetensorsWriter.create(path, specs);
    await w.write("a", new Uint8Array(64));
    const syncData = Deno.FsFile.prototype.syncData;
    Deno.FsFile.prototype.syncData = () => Promise.reject(enospc());
    try {
      await assert.rejects(w.close(), (e: Error) => e.message.startsWith(`${path}: No space left on device`));
    } finally {
      Deno.FsFile.prototype.syncData = syncData;
    }
    assert.deepEqual(await names(dir), []);
  });
});

Deno.test("metrics: a write error names metrics.jsonl", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "metrics.jsonl");
    const m = { step: 1, loss: 1, lr: 1, grad_norm: 1, tokens: 1, tokens_per_s: 1, gpu_bytes: 1 };
    const w = await MetricsWriter.open(path);
    await rejectsFull(10, path, () => w.write(m));
    w.close();
  });
});

Deno.test({
  name: "metrics: on a really full disk (/dev/full) the error names the file",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    const w = await MetricsWriter.open("/dev/full");
    const m = { step: 1, loss: 1, lr: 1, grad_norm: 1, tokens: 1, tokens_per_s: 1, gpu_bytes: 1 };
    await assert.rejects(w.write(m), /^Error: \/dev\/full: No space left on device \(os error 28\)$/);
    w.close();
  },
});

Deno.test("merge and quantize: a failed run leaves no OUT; a folder holding files is refused, an empty one filled", async () => {
  const gpu = await requestGpu();
  const dir = await loraFixture();
  const args = { model: join(dir, "model"), adapter: join(dir, "adapter"), out: join(dir, "merged") };
  await rejectsFull(5000, join(dir, "merged.partial", "model.safetensors"), () => mergeAdapterFolder(gpu, args));
  assert.deepEqual(await names(dir), ["adapter", "model"]);
  await Deno.mkdir(args.out);
  await Deno.writeTextFile(join(args.out, "notes.txt"), "mine");
  const refused = /Output folder .*merged already exists and is not empty/;
  await assert.rejects(mergeAdapterFolder(gpu, args), refused);
  await assert.rejects(mergeAdapterFolder(gpu, { ...args, quantize: true }), refused);
  await assert.rejects(quantizeFolder(gpu, { input: args.model, output: args.out }), refused);
  assert.deepEqual(await names(args.out), ["notes.txt"]);
  await Deno.remove(join(args.out, "notes.txt"));
  await mergeAdapterFolder(gpu, args);
  assert.ok((await names(args.out)).includes("model.safetensors"));
  assert.deepEqual(await names(dir), ["adapter", "merged", "model"]);
  await Deno.remove(dir, { recursive: true });
});
