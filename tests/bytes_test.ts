import assert from "node:assert/strict";
import { formatBytes, parseBytes } from "../mod.ts";

Deno.test("parseBytes: plain numbers and units; bad input names the value", () => {
  assert.equal(parseBytes("1048576"), 1048576);
  assert.equal(parseBytes("991904B"), 991904);
  assert.equal(parseBytes("512MiB"), 512 * 2 ** 20);
  assert.equal(parseBytes("6GiB"), 6 * 2 ** 30);
  assert.equal(parseBytes("1.5GB"), 1.5e9);
  assert.throws(() => parseBytes("6 parsecs"), /"6 parsecs"/);
  assert.throws(() => parseBytes(-1), /-1/);
  assert.equal(formatBytes(3 * 2 ** 20), "3.00 MiB");
});
