import assert from "node:assert/strict";
import { renderWgslModule } from "../scripts/embed_wgsl.ts";

Deno.test("lib/gpu/_wgsl.ts is the current copy of wgsl/ (run `deno task embed`)", async () => {
  const current = await Deno.readTextFile(new URL("../lib/gpu/_wgsl.ts", import.meta.url));
  assert.equal(current, await renderWgslModule());
});

/** Renders a folder holding `files` (name -> text) and returns the embedded sources by kernel name. */
async function _render(files: Record<string, string>): Promise<Record<string, string>> {
  const dir = await Deno.makeTempDir();
  try {
    for (const [name, text] of Object.entries(files)) await Deno.writeTextFile(`${dir}/${name}`, text);
    const src = await renderWgslModule(new URL(`file://${dir}/`));
    const body = src.slice(src.indexOf("{"), src.lastIndexOf("}") + 1).replace(/,\n}$/, "\n}");
    return JSON.parse(body);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("embed_wgsl: an include expands once per kernel, nested includes too; fragments are no kernels", async () => {
  const wgsl = await _render({
    "k.wgsl": '// k\n#include "_a.wgsl"\n  #include "_b.wgsl"\n#include "_a.wgsl"\nfn main() {}\n',
    "j.wgsl": '#include "_b.wgsl"\n',
    "_a.wgsl": "fn a() {}\n",
    "_b.wgsl": '#include "_a.wgsl"\nfn b() {}\n',
  });
  assert.deepEqual(Object.keys(wgsl), ["j", "k"]);
  assert.equal(wgsl.k, "// k\nfn a() {}\nfn b() {}\nfn main() {}\n");
  assert.equal(wgsl.j, "fn a() {}\nfn b() {}\n");
});

Deno.test("embed_wgsl: an unknown or misnamed fragment is an error naming the file and line", async () => {
  await assert.rejects(
    () => _render({ "k.wgsl": '// k\n#include "_missing.wgsl"\n' }),
    /unknown fragment "_missing\.wgsl" at wgsl\/k\.wgsl:2/,
  );
  await assert.rejects(
    () => _render({ "k.wgsl": '#include "_b.wgsl"\n', "_b.wgsl": '\n#include "_c.wgsl"\n' }),
    /"_c\.wgsl" at wgsl\/_b\.wgsl:2 \(included by wgsl\/k\.wgsl\)/,
  );
  await assert.rejects(
    () => _render({ "k.wgsl": '#include "a.wgsl"\n', "a.wgsl": "" }),
    /Include of "a\.wgsl" at wgsl\/k\.wgsl:1: fragments are named _name\.wgsl/,
  );
});
