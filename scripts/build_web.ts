// deno task build:web: bundles the library for browsers (dist/web/qlora-webgpu.js, minified, with a source map)
// and the page (dist/web/index.html, page.js, the built-in reversal data). esbuild resolves the npm packages of
// deno.json from Deno's npm cache (this project uses no node_modules folder).

import * as esbuild from "esbuild";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "dist", "web");

/** The npm packages of deno.json's import map, as folders of Deno's npm cache (fetched first by `deno cache`). */
async function npmAliases(): Promise<Record<string, string>> {
  const map: Record<string, string> = JSON.parse(await Deno.readTextFile(join(root, "deno.json"))).imports;
  const npm = Object.entries(map).filter(([, v]) => v.startsWith("npm:"));
  const cache = new Deno.Command(Deno.execPath(), { args: ["cache", ...npm.map(([, v]) => v)], cwd: root });
  if (!(await cache.output()).success) throw new Error("deno cache of the npm packages failed");
  const info = new Deno.Command(Deno.execPath(), { args: ["info", "--json"], stdout: "piped" });
  const npmCache: string = JSON.parse(new TextDecoder().decode((await info.output()).stdout)).npmCache;
  return Object.fromEntries(npm.map(([name, v]) => {
    const [, pkg, version] = /^npm:(@?[^@]+)@(.+)$/.exec(v)!;
    return [name, join(npmCache, "registry.npmjs.org", pkg, version)];
  }));
}

/** The page imports the library by its built name, so it is not bundled twice. */
const libraryExternal: esbuild.Plugin = {
  name: "library-external",
  setup(build) {
    build.onResolve({ filter: /qlora_webgpu\.ts$/ }, () => ({ path: "./qlora-webgpu.js", external: true }));
  },
};

await Deno.remove(out, { recursive: true }).catch(() => {});
await Deno.mkdir(out, { recursive: true });
const common: esbuild.BuildOptions = {
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  minify: true,
  sourcemap: true,
  alias: await npmAliases(),
  logLevel: "warning",
};
await esbuild.build({
  ...common,
  entryPoints: [join(root, "web", "qlora_webgpu.ts")],
  outfile: join(out, "qlora-webgpu.js"),
});
await esbuild.build({
  ...common,
  entryPoints: [join(root, "web", "page.ts")],
  outfile: join(out, "page.js"),
  plugins: [libraryExternal],
});
await esbuild.stop();
await Deno.copyFile(join(root, "web", "index.html"), join(out, "index.html"));
await Deno.copyFile(join(root, "data", "reverse_train.jsonl"), join(out, "reverse_train.jsonl"));
await Deno.copyFile(join(root, "data", "reverse_test.jsonl"), join(out, "reverse_test.jsonl"));

const js = await Deno.readFile(join(out, "qlora-webgpu.js"));
console.log(
  `${join(out, "qlora-webgpu.js")}: ${(js.byteLength / 1024).toFixed(0)} KiB, ${
    (gzipSync(js).byteLength / 1024).toFixed(0)
  } KiB gzipped`,
);
