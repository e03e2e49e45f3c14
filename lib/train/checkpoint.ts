/**
 * Checkpoint folders of a run: `OUT/checkpoint-N/` holds what the trainer writes into it (PEFT adapter, optimizer
 * state) plus `trainer_state.json` (step, data position, the run's flags). The folder is filled under a
 * temporary name and renamed into place, so a `checkpoint-N` folder is always complete, and a run killed at any
 * moment resumes from the last one.
 *
 * @module
 */

import { join } from "node:path";
import { readJsonFile, writeJsonFile } from "../io/json_file.ts";
import type { DataPosition } from "../data/loader.ts";

/** File name of the trainer state inside a checkpoint. */
export const TRAINER_STATE_FILE = "trainer_state.json";

/** What a checkpoint records besides the files the trainer writes. */
export interface TrainerState {
  /** Optimizer steps done. */
  step: number;
  /** Where the data loader is. */
  dataPosition: DataPosition;
  /** The run's flags, as `parseFinetuneArgs` returns them, so `--resume OUT` alone continues the run. */
  args: string[];
}

/** A checkpoint found on disk. */
export interface CheckpointRef {
  /** Its folder. */
  dir: string;
  /** Its step. */
  step: number;
}

/**
 * The folder of step `step`'s checkpoint.
 *
 * @param out The run's output folder.
 * @param step The step.
 * @returns `OUT/checkpoint-STEP`.
 *
 * @example
 * ```ts
 * import { checkpointDir } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * assert.equal(checkpointDir("out", 250), "out/checkpoint-250");
 * ```
 */
export function checkpointDir(out: string, step: number): string {
  return join(out, `checkpoint-${step}`);
}

/**
 * Saves a checkpoint: creates a temporary folder, lets `writeFiles` fill it (adapter, optimizer state), writes
 * `trainer_state.json` last, then renames the folder to `OUT/checkpoint-N` (replacing an older one of that step).
 * Leftover temporary folders of killed runs are removed.
 *
 * @param out The run's output folder (created if missing).
 * @param state The trainer state; `state.step` names the folder.
 * @param writeFiles Writes the trainer's files into the folder it is given.
 * @returns The checkpoint's folder.
 *
 * @example
 * ```ts
 * import { findLastCheckpoint, saveCheckpoint } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * const out = await Deno.makeTempDir();
 * const state = { step: 5, dataPosition: { epoch: 0, index: 80, seed: 42 }, args: [] };
 * await saveCheckpoint(out, state, (dir) => Deno.writeTextFile(`${dir}/x.txt`, "x"));
 * assert.equal((await findLastCheckpoint(out))?.step, 5);
 * await Deno.remove(out, { recursive: true });
 * ```
 */
export async function saveCheckpoint(
  out: string,
  state: TrainerState,
  writeFiles: (dir: string) => Promise<void>,
): Promise<string> {
  await Deno.mkdir(out, { recursive: true });
  for await (const e of Deno.readDir(out)) {
    if (e.isDirectory && /^checkpoint-\d+\.(tmp|old)-/.test(e.name)) {
      await Deno.remove(join(out, e.name), { recursive: true });
    }
  }
  const final = checkpointDir(out, state.step);
  const tag = `${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  const tmp = `${final}.tmp-${tag}`;
  await Deno.mkdir(tmp);
  try {
    await writeFiles(tmp);
    await writeJsonFile(join(tmp, TRAINER_STATE_FILE), state);
    const old = `${final}.old-${tag}`;
    const replaced = await Deno.rename(final, old).then(() => true, () => false);
    await Deno.rename(tmp, final);
    if (replaced) await Deno.remove(old, { recursive: true });
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
  return final;
}

/**
 * Finds the complete checkpoint with the highest step in a run's folder.
 *
 * @param out The run's output folder.
 * @returns The checkpoint, or null when there is none (or no folder).
 *
 * @example
 * ```ts
 * import { findLastCheckpoint } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * assert.equal(await findLastCheckpoint(await Deno.makeTempDir()), null);
 * ```
 */
export async function findLastCheckpoint(out: string): Promise<CheckpointRef | null> {
  let best: CheckpointRef | null = null;
  try {
    for await (const e of Deno.readDir(out)) {
      const m = /^checkpoint-(\d+)$/.exec(e.name);
      if (!e.isDirectory || !m) continue;
      const step = Number(m[1]);
      if (best && step <= best.step) continue;
      try {
        await Deno.stat(join(out, e.name, TRAINER_STATE_FILE));
      } catch {
        continue; // not written by saveCheckpoint
      }
      best = { dir: join(out, e.name), step };
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  return best;
}

/**
 * Reads a checkpoint's `trainer_state.json`.
 *
 * @param dir The checkpoint folder.
 * @returns The trainer state.
 * @throws {Error} Naming the file when it is missing or lacks a field.
 *
 * @example
 * ```ts
 * import { readTrainerState, saveCheckpoint } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * const out = await Deno.makeTempDir();
 * const state = { step: 2, dataPosition: { epoch: 0, index: 2, seed: 1 }, args: ["--lr", "1e-3"] };
 * const dir = await saveCheckpoint(out, state, async () => {});
 * assert.deepEqual(await readTrainerState(dir), state);
 * await Deno.remove(out, { recursive: true });
 * ```
 */
export async function readTrainerState(dir: string): Promise<TrainerState> {
  const path = join(dir, TRAINER_STATE_FILE);
  const json = await readJsonFile(path);
  const pos = json.dataPosition as Record<string, unknown> | undefined;
  if (
    typeof json.step !== "number" || !pos || typeof pos.epoch !== "number" || typeof pos.index !== "number" ||
    typeof pos.seed !== "number" || !Array.isArray(json.args)
  ) {
    throw new Error(`${path}: expected step, dataPosition {epoch, index, seed} and args`);
  }
  return json as unknown as TrainerState;
}
