/**
 * The output folder of a fine-tuning run, before the run starts: a fresh run gets a new or empty folder (or, with
 * `--overwrite`, one cleared of an earlier run's files); a resumed run gets the last intact checkpoint of the run
 * that wrote the folder. Both first repair interrupted checkpoint saves and sweep temporary files of killed writers.
 *
 * @module
 */

import { join } from "../platform/path.ts";
import { sweepTempFiles } from "../io/atomic_write.ts";
import { _unlessNotFound } from "../io/_file.ts";
import { PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE } from "../io/peft.ts";
import {
  type CheckpointRef,
  listCheckpoints,
  readTrainerState,
  restoreCheckpoints,
  type TrainerState,
} from "./checkpoint.ts";
import { metricsRun } from "./metrics.ts";
import { storage } from "../platform/storage.ts";

/** File name of the metrics inside a run's folder. */
export const METRICS_FILE = "metrics.jsonl";
/** File name of the loss curve inside a run's folder. */
export const LOSS_SVG_FILE = "loss.svg";

/** Whether `name` is something a training run writes into its folder (so `--overwrite` may remove it). */
function _runEntry(name: string, more: readonly string[]): boolean {
  return [METRICS_FILE, LOSS_SVG_FILE, PEFT_WEIGHTS_FILE, PEFT_CONFIG_FILE, ...more].includes(name) ||
    /^checkpoint-\d+(\.(tmp|old)-.+)?$/.test(name);
}

/**
 * Gets a fresh run's output folder ready: missing or empty is fine; a non-empty one is refused (naming what is
 * there) unless `overwrite`, which removes an earlier run's files: `metrics.jsonl` first, so a kill midway leaves
 * nothing `--resume` would continue. Files a run does not write are never removed (refused, named).
 *
 * @param out The `--out` folder.
 * @param overwrite `--overwrite` was given.
 * @param more Other names the run writes (LLM-QAT's `model` folder; its `.partial` counts too).
 * @throws {Error} If `out` is a file, or holds files (of another run without `overwrite`; not a run's at all).
 *
 * @example
 * ```ts
 * import { prepareFreshRun } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * const out = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${out}/metrics.jsonl`, "");
 * await assert.rejects(prepareFreshRun(out, false), /already holds metrics\.jsonl.*--overwrite/);
 * await prepareFreshRun(out, true);
 * assert.deepEqual([...Deno.readDirSync(out)], []);
 * await Deno.remove(out);
 * ```
 */
export async function prepareFreshRun(out: string, overwrite: boolean, more: readonly string[] = []): Promise<void> {
  try {
    if (!(await storage().stat(out)).isDirectory) throw new Error(`--out ${out} is a file, not a folder`);
  } catch (e) {
    _unlessNotFound(e);
    return;
  }
  await sweepTempFiles(out);
  const names = (await Array.fromAsync(storage().readDir(out))).map((e) => e.name).sort();
  if (names.length === 0) return;
  const shown = names.slice(0, 5).join(", ") + (names.length > 5 ? `, … (${names.length} entries)` : "");
  if (!overwrite) {
    throw new Error(
      `--out ${out} already holds ${shown}: continue that run with --resume ${out}, replace it with --overwrite, ` +
        `or choose a new folder`,
    );
  }
  const foreign = names.filter((n) => !_runEntry(n, [...more, ...more.map((m) => `${m}.partial`)]));
  if (foreign.length > 0) {
    throw new Error(`--overwrite removes only a run's files; ${out} also holds ${foreign.join(", ")}: move them`);
  }
  const order = [...names.filter((n) => n === METRICS_FILE), ...names.filter((n) => n !== METRICS_FILE)];
  for (const n of order) await storage().remove(join(out, n), { recursive: true }).catch(_unlessNotFound);
}

/**
 * Finds the checkpoint a resumed run continues from: the highest intact checkpoint of the run that wrote
 * `metrics.jsonl` (its `"run"` id equals the checkpoint's `runId`). Checkpoints of another run are skipped, and so
 * are damaged ones (unreadable trainer state, or `check` throws), each said through `log`. Interrupted saves are
 * repaired and temporary files swept first.
 *
 * @param out The run's folder.
 * @param check Throws if a checkpoint's files are damaged (the trainer reads its adapter and optimizer state).
 * @param log Where the notes go.
 * @returns The checkpoint and its trainer state.
 * @throws {Error} If there is no intact checkpoint of the run.
 *
 * @example
 * ```ts
 * import { findResumePoint } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * const out = await Deno.makeTempDir();
 * await assert.rejects(findResumePoint(out, async () => {}, () => {}), /no complete checkpoint/);
 * await Deno.remove(out);
 * ```
 */
export async function findResumePoint(
  out: string,
  check: (dir: string) => Promise<void>,
  log: (message: string) => void,
): Promise<{ checkpoint: CheckpointRef; state: TrainerState }> {
  for (const name of await restoreCheckpoints(out)) log(`Restored ${join(out, name)}, whose save a kill interrupted`);
  await sweepTempFiles(out);
  const current = await metricsRun(join(out, METRICS_FILE));
  const none = `--resume ${out}: no complete checkpoint-N folder`;
  if (current === null) throw new Error(`${none} to resume from (${METRICS_FILE} logs no step)`);
  for (const checkpoint of await listCheckpoints(out)) {
    let state: TrainerState;
    try {
      state = await readTrainerState(checkpoint.dir);
      if (state.step !== checkpoint.step) throw new Error(`its trainer state says step ${state.step}`);
      if (state.runId !== current.run) {
        log(
          `Ignoring ${checkpoint.dir}: written by another run (run id ${state.runId ?? "none"}; ` +
            `${METRICS_FILE} is run ${current.run ?? "none"})`,
        );
        continue;
      }
      await check(checkpoint.dir);
    } catch (e) {
      log(`${checkpoint.dir} is damaged (${(e as Error).message}); falling back to the checkpoint before it`);
      continue;
    }
    return { checkpoint, state };
  }
  throw new Error(`${none} of the run in ${METRICS_FILE} to resume from`);
}
