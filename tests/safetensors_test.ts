import assert from "node:assert/strict";
import { join } from "node:path";
import {
  Rng,
  SafetensorsCheckpoint,
  SafetensorsFile,
  type SafetensorsTensorData,
  SafetensorsWriter,
  writeSafetensors,
} from "../mod.ts";
import {
  encodeSafetensorsHeader,
  SAFETENSORS_DTYPE_BYTES,
  type SafetensorsDType,
  withAtomicFile,
  writeJsonFile,
} from "../lib/io/mod.ts";

function randomBytes(rng: Rng, n: number): Uint8Array {
  return Uint8Array.from({ length: n }, () => rng.int(256));
}

/** A file from a raw header object and a data section of `dataBytes` bytes. */
async function rawFile(dir: string, header: unknown, dataBytes: number, name = "bad.safetensors"): Promise<string> {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const bytes = new Uint8Array(8 + json.byteLength + dataBytes);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(json.byteLength), true);
  bytes.set(json, 8);
  const path = join(dir, name);
  await Deno.writeFile(path, bytes);
  return path;
}

Deno.test("safetensors: round trip of every dtype, header padded to 8 with spaces", async () => {
  const dir = await Deno.makeTempDir();
  const rng = new Rng(1);
  const shapes = [[3, 5], [7], [], [2, 0, 3], [1, 1, 9]];
  const tensors: SafetensorsTensorData[] = (Object.keys(SAFETENSORS_DTYPE_BYTES) as SafetensorsDType[]).map(
    (dtype, i) => {
      const shape = shapes[i % shapes.length];
      const n = shape.reduce((a, b) => a * b, 1);
      return { name: `t${i}.${dtype}`, dtype, shape, data: randomBytes(rng, n * SAFETENSORS_DTYPE_BYTES[dtype]) };
    },
  );
  const path = join(dir, "all.safetensors");
  await writeSafetensors(path, tensors, { format: "pt", note: "x" });
  const raw = await Deno.readFile(path);
  const n = Number(new DataView(raw.buffer).getBigUint64(0, true));
  assert.equal(n % 8, 0);
  const json = new TextDecoder().decode(raw.subarray(8, 8 + n));
  assert.ok(json.startsWith('{"__metadata__":{"format":"pt","note":"x"}'));
  assert.match(json, /} *$/);
  using f = await SafetensorsFile.open(path);
  assert.deepEqual(f.metadata, { format: "pt", note: "x" });
  assert.deepEqual(f.names(), tensors.map((t) => t.name));
  for (const t of tensors) {
    assert.equal(f.info(t.name).dtype, t.dtype);
    assert.deepEqual(f.info(t.name).shape, t.shape);
    assert.deepEqual(await f.read(t.name), t.data, t.name);
  }
  assert.throws(() => f.info("nope"), /all\.safetensors: no tensor "nope"/);
});

Deno.test("safetensors: readF32 converts F16/BF16; rejects integer tensors by name", async () => {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "f.safetensors");
  await writeSafetensors(path, [
    { name: "h", dtype: "F16", shape: [2], data: new Uint8Array(new Float16Array([0.5, -3]).buffer) },
    { name: "b", dtype: "BF16", shape: [2], data: new Uint8Array(new Uint16Array([0x3f80, 0xc000]).buffer) },
    { name: "i", dtype: "I32", shape: [1], data: new Uint8Array(4) },
  ]);
  using f = await SafetensorsFile.open(path);
  assert.deepEqual([...await f.readF32("h")], [0.5, -3]);
  assert.deepEqual([...await f.readF32("b")], [1, -2]);
  await assert.rejects(f.readF32("i"), /f\.safetensors: tensor "i" is I32/);
});

Deno.test("safetensors: streaming writer checks order and sizes, leaves nothing behind on failure", async () => {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "s.safetensors");
  const specs = [
    { name: "a", dtype: "F32" as const, shape: [4] },
    { name: "empty", dtype: "F32" as const, shape: [0] },
    { name: "b", dtype: "U8" as const, shape: [3] },
  ];
  const w = await SafetensorsWriter.create(path, specs);
  await w.write("a", new Uint8Array(8)); // chunked
  await w.write("a", new Uint8Array(8));
  await w.write("b", new Uint8Array([1, 2, 3])); // the zero-byte tensor needs no write
  await w.close();
  using f = await SafetensorsFile.open(path);
  assert.deepEqual(f.info("empty").shape, [0]);
  assert.deepEqual([...await f.read("b")], [1, 2, 3]);

  const bad = join(dir, "bad.safetensors");
  const w2 = await SafetensorsWriter.create(bad, specs);
  await assert.rejects(
    w2.write("b", new Uint8Array(3)),
    /bad\.safetensors: tensor "b" written out of order \(expected "a"\)/,
  );
  const w3 = await SafetensorsWriter.create(bad, specs);
  await assert.rejects(w3.write("a", new Uint8Array(20)), /tensor "a" got 20 bytes, declared 16/);
  const w4 = await SafetensorsWriter.create(bad, specs);
  await w4.write("a", new Uint8Array(16));
  await assert.rejects(w4.close(), /closed before tensor "b"/);
  const left = [];
  for await (const e of Deno.readDir(dir)) left.push(e.name);
  assert.deepEqual(left, ["s.safetensors"]);
  assert.throws(() => encodeSafetensorsHeader([specs[0], specs[0]]), /"a" is repeated/);
});

Deno.test("safetensors: tensors appended after the declared ones land in the reserved header room", async () => {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "ap.safetensors");
  const w = await SafetensorsWriter.create(path, [{ name: "a", dtype: "F32", shape: [2] }], {
    reserveHeaderBytes: 200,
  });
  await w.write("a", new Uint8Array(new Float32Array([1, 2]).buffer));
  await w.append({ name: "json", dtype: "U8", shape: [5] }, new TextEncoder().encode('{"x"}'));
  await w.close();
  using f = await SafetensorsFile.open(path);
  assert.deepEqual(f.names(), ["a", "json"]);
  assert.deepEqual([f.info("json").begin, f.info("json").end], [8, 13]);
  assert.equal(new TextDecoder().decode(await f.read("json")), '{"x"}');
  assert.deepEqual([...await f.readF32("a")], [1, 2]);

  const small = await SafetensorsWriter.create(join(dir, "small.safetensors"), [], { reserveHeaderBytes: 0 });
  await small.append({ name: "a_long_tensor_name_that_needs_room", dtype: "U8", shape: [1] }, new Uint8Array(1));
  await assert.rejects(small.close(), /small\.safetensors: header needs \d+ bytes but 32 were reserved/);
  assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["ap.safetensors"]);
});

Deno.test("withAtomicFile: a failed write keeps the old file", async () => {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "x.json");
  await Deno.writeTextFile(path, "old");
  await assert.rejects(
    withAtomicFile(path, async (file) => {
      await file.write(new Uint8Array([1, 2]));
      throw new Error("killed");
    }),
    /killed/,
  );
  assert.equal(await Deno.readTextFile(path), "old");
  assert.equal([...Deno.readDirSync(dir)].length, 1);
});

Deno.test("safetensors: every header error names the file and the key", async () => {
  const dir = await Deno.makeTempDir();
  const e = (dtype: string, shape: unknown, offsets: unknown) => ({ dtype, shape, data_offsets: offsets });
  const cases: [unknown, number, RegExp][] = [
    [{ w: e("F33", [1], [0, 4]) }, 4, /bad\.safetensors: tensor "w": unknown dtype "F33"/],
    [{ w: e("F32", [2, -1], [0, 4]) }, 4, /tensor "w": shape \[2,-1\] is not a list of non-negative integers/],
    [{ w: e("F32", [3], [0, 8]) }, 8, /tensor "w": shape \[3\] F32 needs 12 bytes but data_offsets \[0, 8\] span 8/],
    [{ w: e("F32", [2], [8, 4]) }, 8, /tensor "w": data_offsets \[8,4\] is not \[begin, end\]/],
    [{ w: e("F32", [4], [0, 16]) }, 8, /tensor "w": data_offsets \[0, 16\] run past the data section \(8 bytes\)/],
    [
      { a: e("U8", [4], [0, 4]), b: e("U8", [4], [2, 6]) },
      8,
      /tensor "b" data \[2, 6\) overlaps tensor "a" \[0, 4\)/,
    ],
    [{ w: 3 }, 0, /tensor "w": entry is not an object/],
    [{ __metadata__: { a: 1 } }, 0, /"__metadata__" key "a" is not a string/],
    [[1, 2], 0, /bad\.safetensors: header is not a JSON object/],
  ];
  for (const [header, dataBytes, re] of cases) {
    const path = await rawFile(dir, header, dataBytes);
    await assert.rejects(SafetensorsFile.open(path), re);
  }
  // Bad JSON, a truncated header, a huge header length, a file too short.
  const path = join(dir, "raw.safetensors");
  const prefix = new Uint8Array(8);
  new DataView(prefix.buffer).setBigUint64(0, 5n, true);
  await Deno.writeFile(path, new Uint8Array([...prefix, ...new TextEncoder().encode("{bad}")]));
  await assert.rejects(SafetensorsFile.open(path), /raw\.safetensors: header is not valid UTF-8 JSON/);
  await Deno.writeFile(path, new Uint8Array([...prefix, 0x7b]));
  await assert.rejects(SafetensorsFile.open(path), /raw\.safetensors: header length 5 runs past the end .*truncated/);
  new DataView(prefix.buffer).setBigUint64(0, 1n << 40n, true);
  await Deno.writeFile(path, prefix);
  await assert.rejects(SafetensorsFile.open(path), /raw\.safetensors: header length 1099511627776 exceeds/);
  await Deno.writeFile(path, new Uint8Array(3));
  await assert.rejects(SafetensorsFile.open(path), /raw\.safetensors: 3 bytes is too short/);
  await assert.rejects(SafetensorsFile.open(join(dir, "missing.safetensors")), /missing\.safetensors: cannot open/);
});

Deno.test("safetensors: a file cut short names the tensor that runs past the end", async () => {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "cut.safetensors");
  await writeSafetensors(path, [
    { name: "a", dtype: "F32", shape: [4], data: new Uint8Array(16) },
    { name: "b", dtype: "F32", shape: [4], data: new Uint8Array(16) },
  ]);
  const full = await Deno.readFile(path);
  await Deno.writeFile(path, full.subarray(0, full.byteLength - 5));
  await assert.rejects(SafetensorsFile.open(path), /cut\.safetensors: tensor "b": data_offsets \[16, 32\] run past/);
});

Deno.test("safetensors: sharded checkpoint through model.safetensors.index.json", async () => {
  const dir = await Deno.makeTempDir();
  const t = (name: string, v: number): SafetensorsTensorData => ({
    name,
    dtype: "U8",
    shape: [2],
    data: new Uint8Array([v, v + 1]),
  });
  await writeSafetensors(join(dir, "model-00001-of-00002.safetensors"), [t("a", 1), t("b", 3)]);
  await writeSafetensors(join(dir, "model-00002-of-00002.safetensors"), [t("c", 5)]);
  const weightMap = {
    a: "model-00001-of-00002.safetensors",
    b: "model-00001-of-00002.safetensors",
    c: "model-00002-of-00002.safetensors",
  };
  await writeJsonFile(join(dir, "model.safetensors.index.json"), {
    metadata: { total_size: 6 },
    weight_map: weightMap,
  });
  {
    using ckpt = await SafetensorsCheckpoint.open(dir);
    assert.deepEqual(ckpt.names(), ["a", "b", "c"]);
    assert.deepEqual([...await ckpt.read("c")], [5, 6]);
    assert.equal(ckpt.fileOf("b").path, join(dir, "model-00001-of-00002.safetensors"));
    assert.throws(() => ckpt.info("zz"), /no tensor "zz" in the checkpoint/);
  }
  // The index names a tensor its shard lacks, or a shard that is missing.
  await writeJsonFile(join(dir, "model.safetensors.index.json"), {
    weight_map: { ...weightMap, d: "model-00002-of-00002.safetensors" },
  });
  await assert.rejects(
    SafetensorsCheckpoint.open(dir),
    /model\.safetensors\.index\.json: weight_map\["d"\] names .*model-00002-of-00002\.safetensors, which has no tensor "d"/,
  );
  await writeJsonFile(join(dir, "model.safetensors.index.json"), { weight_map: { a: "gone.safetensors" } });
  await assert.rejects(SafetensorsCheckpoint.open(dir), /gone\.safetensors: cannot open/);
  await Deno.writeTextFile(join(dir, "model.safetensors.index.json"), "{");
  await assert.rejects(SafetensorsCheckpoint.open(dir), /model\.safetensors\.index\.json: not valid JSON/);
  // Without an index: every .safetensors file in the folder; a name in two files is an error.
  await Deno.remove(join(dir, "model.safetensors.index.json"));
  {
    using ckpt = await SafetensorsCheckpoint.open(dir);
    assert.deepEqual(ckpt.names(), ["a", "b", "c"]);
  }
  await writeSafetensors(join(dir, "extra.safetensors"), [t("a", 9)]);
  await assert.rejects(SafetensorsCheckpoint.open(dir), /tensor "a" is in both/);
  await assert.rejects(SafetensorsCheckpoint.open(await Deno.makeTempDir()), /no \.safetensors files in the folder/);
});
