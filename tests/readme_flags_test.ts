import assert from "node:assert/strict";
import { flagName } from "../lib/flags.ts";
import { CLI_FLAGS, readmeWithFlags } from "../scripts/readme_flags.ts";

const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));

Deno.test("README: each CLI's flag list names exactly its table's flags, with the table's defaults", () => {
  for (const [cli, table] of Object.entries(CLI_FLAGS)) {
    const section = new RegExp(`<!-- flags: ${cli} -->([\\s\\S]*?)<!-- /flags -->`).exec(readme);
    assert.ok(section, `README.md has no flag list for ${cli}`);
    const listed = [...section[1].matchAll(/^--([\w-]+)/gm)].map((m) => m[1]);
    assert.deepEqual(listed, Object.entries(table).map(([k, f]) => flagName(k, f)), cli);
    for (const [k, f] of Object.entries(table)) {
      if (f.shown === null) continue;
      const line = section[1].split("\n").find((l) => l.startsWith(`--${flagName(k, f)} `));
      assert.ok(line?.endsWith(`(${f.shown})`), `${cli} --${flagName(k, f)}: README shows "${line}"`);
    }
  }
  assert.equal(readme, readmeWithFlags(readme), "README.md flag lists are stale: run `deno task readme`");
});
