// deno task serve:web [PORT]: serves dist/web (built by `deno task build:web`) on http://localhost:PORT/ (8000).

import { extname, join } from "node:path";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript",
  ".map": "application/json",
  ".jsonl": "text/plain; charset=utf-8",
};

/**
 * Serves the files of `dir` on localhost until the returned server is shut down.
 *
 * @param dir The folder (dist/web).
 * @param port The port (0: any free one).
 * @returns The server; `addr.port` is the port.
 */
export function serveWeb(dir: string, port: number): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({ port, hostname: "127.0.0.1", onListen: () => {} }, async (req) => {
    const name = new URL(req.url).pathname.replace(/^\/+/, "") || "index.html";
    if (name.includes("..")) return new Response("bad path", { status: 400 });
    try {
      const body = await Deno.readFile(join(dir, name));
      return new Response(body, { headers: { "content-type": TYPES[extname(name)] ?? "application/octet-stream" } });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
}

if (import.meta.main) {
  const dir = join(import.meta.dirname!, "..", "dist", "web");
  const server = serveWeb(dir, Number(Deno.args[0] ?? 8000));
  console.log(`Serving ${dir} on http://localhost:${server.addr.port}/ (build it first: deno task build:web)`);
}
