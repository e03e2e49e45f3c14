/**
 * Checkpoint folders of a run: `OUT/checkpoint-N/` holds what the trainer writes into it (PEFT adapter, optimizer
 * state) plus `trainer_state.json` (step, data position, the run's flags). The folder is filled under a
 * temporary name and renamed into place, so a `checkpoint-N` folder is always complete, and a run killed at any
 * moment resumes from the last one (a kill between the two renames of a re-save is repaired by
 * {@linkcode restoreCheckpoints}).
 *
 * @module
 */

import { join } from "../platform/path.ts";
import { readJsonFile, writeJsonFile } from "../io/json_file.ts";
import { _exists, _unlessNotFound } from "../io/_file.ts";
import type { DataPosition } from "../data/loader.ts";
import { storage } from "../platform/storage.ts";

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
  /** Id of the run that wrote the checkpoint (absent in checkpoints written before run ids). */
  runId?: string;
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
 * What killed saves left is repaired first ({@linkcode restoreCheckpoints}).
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
  await storage().mkdir(out, { recursive: true });
  await restoreCheckpoints(out);
  const final = checkpointDir(out, state.step);
  const tag = `${storage().writerId}-${crypto.randomUUID().slice(0, 8)}`;
  const tmp = `${final}.tmp-${tag}`;
  await storage().mkdir(tmp);
  try {
    await writeFiles(tmp);
    await writeJsonFile(join(tmp, TRAINER_STATE_FILE), state);
    const old = `${final}.old-${tag}`;
    const replaced = await storage().rename(final, old).then(() => true, () => false);
    await storage().rename(tmp, final);
    if (replaced) await storage().remove(old, { recursive: true });
  } catch (e) {
    await storage().remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
  return final;
}

/**
 * Repairs what killed saves left: a complete new copy `checkpoint-N.tmp-…` (it has `trainer_state.json`, written
 * last) becomes `checkpoint-N`, replacing one that may be a folder rename cut short (OPFS renames by copying); where
 * `checkpoint-N` is missing (a kill between the two renames of a re-save) and no new copy is complete, the previous
 * one `checkpoint-N.old-…` takes its place; every other temporary or old folder is removed.
 *
 * @param out The run's output folder (a missing one has nothing to repair).
 * @returns The names of the `checkpoint-N` folders put back, sorted.
 *
 * @example A kill between the renames: the complete new copy is put back
 * ```ts
 * import { restoreCheckpoints } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * const out = await Deno.makeTempDir();
 * await Deno.mkdir(`${out}/checkpoint-4.old-1-0badf00d`);
 * await Deno.mkdir(`${out}/checkpoint-4.tmp-1-0badf00d`);
 * await Deno.writeTextFile(`${out}/checkpoint-4.tmp-1-0badf00d/trainer_state.json`, "{}");
 * assert.deepEqual(await restoreCheckpoints(out), ["checkpoint-4"]);
 * assert.deepEqual([...Deno.readDirSync(out)].map((e) => e.name), ["checkpoint-4"]);
 * await Deno.remove(out, { recursive: true });
 * ```
 */
export async function restoreCheckpoints(out: string): Promise<string[]> {
  const leftovers = new Map<string, { tmp: string[]; old: string[] }>();
  const present = new Set<string>();
  try {
    for await (const e of storage().readDir(out)) {
      if (!e.isDirectory) continue;
      const m = /^(checkpoint-\d+)(?:\.(tmp|old)-.*)?$/.exec(e.name);
      if (!m) continue;
      if (!m[2]) present.add(m[1]);
      else {
        const entry = leftovers.get(m[1]) ?? { tmp: [], old: [] };
        entry[m[2] as "tmp" | "old"].push(e.name);
        leftovers.set(m[1], entry);
      }
    }
  } catch (e) {
    _unlessNotFound(e);
    return [];
  }
  const restored: string[] = [];
  for (const [name, { tmp, old }] of leftovers) {
    // A complete `.tmp-` copy is the newest state of its step even beside `checkpoint-N`: that one may be a folder
    // rename cut short (OPFS renames a folder by copying it). An `.old-` copy only stands in for a missing one.
    const fresh = await _firstWith(out, tmp, TRAINER_STATE_FILE);
    const complete = fresh ?? (present.has(name) ? null : await _firstWith(out, old, TRAINER_STATE_FILE));
    if (complete) {
      if (present.has(name)) await storage().remove(join(out, name), { recursive: true });
      await storage().rename(join(out, complete), join(out, name));
      restored.push(name);
    }
    for (const n of [...tmp, ...old]) await storage().remove(join(out, n), { recursive: true }).catch(_unlessNotFound);
  }
  return restored.sort();
}

/** The first of `dirs` (inside `out`) that holds `file`, or null. */
async function _firstWith(out: string, dirs: string[], file: string): Promise<string | null> {
  for (const d of dirs) {
    if (await _exists(join(out, d, file))) return d;
  }
  return null;
}

/**
 * Lists the complete checkpoints (folders with `trainer_state.json`) of a run's folder, highest step first.
 *
 * @param out The run's output folder.
 * @returns The checkpoints; none when there is no folder.
 *
 * @example
 * ```ts
 * import { listCheckpoints, saveCheckpoint } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * const out = await Deno.makeTempDir();
 * for (const step of [2, 10, 4]) {
 *   await saveCheckpoint(out, { step, dataPosition: { epoch: 0, index: step, seed: 1 }, args: [] }, async () => {});
 * }
 * assert.deepEqual((await listCheckpoints(out)).map((c) => c.step), [10, 4, 2]);
 * await Deno.remove(out, { recursive: true });
 * ```
 */
export async function listCheckpoints(out: string): Promise<CheckpointRef[]> {
  const found: CheckpointRef[] = [];
  try {
    for await (const e of storage().readDir(out)) {
      const m = /^checkpoint-(\d+)$/.exec(e.name);
      // Without trainer_state.json it was not written by saveCheckpoint.
      if (e.isDirectory && m && await _exists(join(out, e.name, TRAINER_STATE_FILE))) {
        found.push({ dir: join(out, e.name), step: Number(m[1]) });
      }
    }
  } catch (e) {
    _unlessNotFound(e);
  }
  return found.sort((a, b) => b.step - a.step);
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
  return (await listCheckpoints(out))[0] ?? null;
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
    typeof pos.seed !== "number" || !Array.isArray(json.args) || !["string", "undefined"].includes(typeof json.runId)
  ) {
    throw new Error(`${path}: expected step, dataPosition {epoch, index, seed}, args and a string runId if any`);
  }
  return json as unknown as TrainerState;
}
