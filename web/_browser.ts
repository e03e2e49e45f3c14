/// <reference lib="dom" />
/**
 * Headless Chromium for the page's browser test and its timing script: the launch flags SwiftShader WebGPU needs,
 * and page errors as a rejection, so no wait runs to its timeout after the page has thrown.
 *
 * @module
 */

import puppeteer, { type Browser, type Page } from "puppeteer-core";

/** Debian's Chromium binary (`apt-get install chromium`). */
export const CHROMIUM = "/usr/lib/chromium/chromium";

/**
 * Starts headless Chromium with WebGPU (SwiftShader where there is no GPU) and a fresh profile, so OPFS starts empty.
 *
 * @returns The browser; close it when done.
 *
 * @example
 * ```ts ignore
 * const browser = await launchChromium();
 * await browser.close();
 * ```
 */
export async function launchChromium(): Promise<Browser> {
  return await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    userDataDir: await Deno.makeTempDir(),
    protocolTimeout: 600_000,
    args: [
      "--headless=new",
      "--no-sandbox",
      "--enable-unsafe-webgpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-quic",
    ],
  });
}

/**
 * A promise that rejects at the page's first uncaught error (across reloads); race waits against it. Console
 * errors are echoed to stderr.
 *
 * @param page The page.
 * @returns A promise that never resolves.
 *
 * @example
 * ```ts ignore
 * const errors = pageErrors(page);
 * await Promise.race([page.waitForFunction("pageState.done", { timeout: 60_000 }), errors]);
 * ```
 */
export function pageErrors(page: Page): Promise<never> {
  const errors = new Promise<never>((_, reject) => {
    page.on("pageerror", (e) => reject(new Error(`page error: ${(e as Error).message}`)));
    page.on("console", (m) => m.type() === "error" && console.error(`page console: ${m.text()}`));
  });
  errors.catch(() => {}); // only the waits raced against it report the error
  return errors;
}
