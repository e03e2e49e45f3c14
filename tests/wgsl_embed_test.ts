import assert from "node:assert/strict";
import { renderWgslModule } from "../scripts/embed_wgsl.ts";

Deno.test("lib/gpu/_wgsl.ts is the current copy of wgsl/ (run `deno task embed`)", async () => {
  const current = await Deno.readTextFile(new URL("../lib/gpu/_wgsl.ts", import.meta.url));
  assert.equal(current, await renderWgslModule());
});
