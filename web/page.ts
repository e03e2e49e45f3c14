/// <reference lib="dom" />
// The page of dist/web/index.html: QLoRA fine-tuning in a tab. Files live in the origin private file system, so a
// reload can resume from the last checkpoint; the trainer, the flag table and the errors are the CLI's own.

import * as q from "./qlora_webgpu.ts";

const OUT = "/runs/web";
const TINY = "/models/tiny";
const USER = "/models/user";
const DATA = "/data/train.jsonl";
/** Flags the page sets itself (folders) or that make no sense in a tab. */
const HIDDEN = new Set([
  "model",
  "data",
  "out",
  "resume",
  "overwrite",
  "initAdapter",
  "profile",
  "gpuMemory",
  "pageSize",
]);

/** What the browser tests read. */
const state = { ready: false, done: false, error: "", losses: [] as number[], steps: 0, seconds: 0 };
Object.assign(globalThis, { qlora: q, pageState: state });

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
let gpu: q.Gpu;
let stopRequested = false;
let userModelFiles = 0;
/** The model of the last run (the adapter's base). */
let lastModel = TINY;

function fail(e: unknown): void {
  state.error = e instanceof Error ? e.message : String(e);
  $("error").textContent = state.error;
  console.error(e);
}

function settingsForm(): void {
  const demo = q.reversalDemoFlags("m", "d", "o", 300);
  const demoValue = (name: string) => {
    const i = demo.indexOf(`--${name}`);
    return i >= 0 && i + 1 < demo.length && !demo[i + 1].startsWith("--") ? demo[i + 1] : "";
  };
  for (const [key, flag] of Object.entries<q.Flag<unknown>>(q.FINETUNE_FLAGS)) {
    if (HIDDEN.has(key)) continue;
    const name = key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
    const label = document.createElement("label");
    label.title = flag.help;
    const input = document.createElement("input");
    input.dataset.flag = flag.negated ? `no-${name}` : name;
    if (flag.type === "boolean") input.type = "checkbox";
    else {
      input.placeholder = flag.shown ?? "";
      // Checkpoints every 25 steps (the demo saves none), so a reload can resume.
      input.value = name === "save-every" ? "25" : demoValue(name);
    }
    label.append(`--${input.dataset.flag}`, input);
    $("settings").append(label);
  }
}

function settingsArgs(): string[] {
  return [...document.querySelectorAll<HTMLInputElement>("#settings input")].flatMap((i) =>
    i.type === "checkbox"
      ? (i.checked ? [`--${i.dataset.flag}`] : [])
      : i.value.trim()
      ? [`--${i.dataset.flag}`, i.value.trim()]
      : []
  );
}

async function copyFiles(files: Iterable<File>, dir: string): Promise<number> {
  const fs = q.storage();
  await fs.remove(dir, { recursive: true }).catch(() => {});
  await fs.mkdir(dir, { recursive: true });
  let n = 0;
  for (const f of files) {
    // Only the top folder's files: config, weights, tokenizer.
    await fs.writeFile(q.join(dir, f.name), new Uint8Array(await f.arrayBuffer()));
    n++;
  }
  return n;
}

async function modelDir(): Promise<string> {
  const choice = document.querySelector<HTMLInputElement>("input[name=model]:checked")!.value;
  if (choice === "folder") {
    if (userModelFiles === 0) throw new Error("Choose a model folder (or drop its files) first");
    await q.loadLlamaConfig(USER);
    return USER;
  }
  const fs = q.storage();
  if (!(await fs.stat(q.join(TINY, "config.json")).catch(() => null))) {
    await q.writeTinyLlama(TINY, q.reversalDemoModel());
  }
  return TINY;
}

async function dataFile(): Promise<string> {
  const choice = document.querySelector<HTMLInputElement>("input[name=data]:checked")!.value;
  const file = $<HTMLInputElement>("dataFile").files?.[0];
  if (choice === "file" && !file) throw new Error("Choose a JSONL data file first");
  const bytes = choice === "file"
    ? new Uint8Array(await file!.arrayBuffer())
    : new Uint8Array(await (await fetch("reverse_train.jsonl")).arrayBuffer());
  await q.storage().mkdir("/data", { recursive: true });
  const path = choice === "file" ? `/data/${file!.name}` : DATA;
  await q.storage().writeFile(path, bytes);
  await q.readJsonl(path); // a bad line fails now, naming the file and line
  return path;
}

function drawLoss(): void {
  const c = $<HTMLCanvasElement>("loss");
  const g = c.getContext("2d")!;
  g.clearRect(0, 0, c.width, c.height);
  const l = state.losses;
  if (l.length === 0) return;
  // The losses' own range: from 0 a short run's curve is a flat line at the top.
  const max = Math.max(...l), min = Math.min(...l);
  g.strokeStyle = "#2a5db0";
  g.lineWidth = 2;
  g.beginPath();
  l.forEach((v, i) => {
    const x = 30 + (i / Math.max(1, l.length - 1)) * (c.width - 40);
    const y = 10 + (1 - (v - min) / (max - min || 1)) * (c.height - 30);
    if (i === 0) g.moveTo(x, y);
    else g.lineTo(x, y);
  });
  g.stroke();
  g.fillStyle = "#333";
  g.font = "11px sans-serif";
  g.fillText(`loss ${max.toFixed(2)}`, 2, 12);
  g.fillText(`${min.toFixed(2)}`, 2, c.height - 20);
  g.fillText(`step ${l.length}`, c.width - 60, c.height - 4);
}

async function train(run: q.ResolvedRun): Promise<void> {
  stopRequested = false;
  lastModel = run.options.model;
  state.done = false;
  $<HTMLButtonElement>("start").disabled = true;
  $<HTMLButtonElement>("resume").hidden = true;
  $<HTMLButtonElement>("stop").disabled = false;
  const total = run.options.steps ?? 0;
  state.losses = run.startStep > 0
    ? (await q.readMetrics(q.join(OUT, "metrics.jsonl"))).slice(0, run.startStep).map((m) => m.loss)
    : [];
  const t0 = performance.now();
  try {
    const result = await q.finetune(gpu, run, {
      sink: {
        writeSync: (b) => (console.log(new TextDecoder().decode(b).trimEnd()), b.length),
        isTerminal: () => false,
      },
      shouldStop: () => stopRequested,
      onStep: (m) => {
        state.losses.push(m.loss);
        state.steps = m.step;
        $<HTMLProgressElement>("bar").max = total || m.step;
        $<HTMLProgressElement>("bar").value = m.step;
        $("stats").textContent = `step ${m.step}/${total || "?"}  loss ${m.loss.toFixed(4)}  ` +
          `${m.tokens_per_s.toFixed(0)} tokens/s  GPU memory ${q.formatBytes(m.gpu_bytes)}`;
        drawLoss();
      },
    });
    state.seconds = (performance.now() - t0) / 1000;
    if (result.lossSvgPath !== null) await offerDownloads();
    else $("stats").textContent += "  (stopped: Resume continues from the last checkpoint)";
  } finally {
    $<HTMLButtonElement>("start").disabled = false;
    $<HTMLButtonElement>("stop").disabled = true;
    state.done = true;
    await showResume();
  }
}

async function offerDownloads(): Promise<void> {
  for (
    const [id, name] of [["downloadModel", "adapter_model.safetensors"], ["downloadConfig", "adapter_config.json"]]
  ) {
    const a = $<HTMLAnchorElement>(id);
    a.href = URL.createObjectURL(new Blob([await q.storage().readFile(q.join(OUT, name)) as BlobPart]));
    a.download = name;
    a.hidden = false;
  }
  $<HTMLButtonElement>("generate").disabled = false;
}

async function showResume(): Promise<void> {
  const names = await Array.fromAsync(q.storage().readDir(OUT), (e) => e.name).catch(() => [] as string[]);
  $<HTMLButtonElement>("resume").hidden = !names.some((n) => /^checkpoint-\d+$/.test(n));
  if (names.includes("adapter_model.safetensors")) await offerDownloads();
}

async function start(): Promise<void> {
  $("error").textContent = "";
  const args = [
    "--model",
    await modelDir(),
    "--data",
    await dataFile(),
    "--out",
    OUT,
    "--overwrite",
    ...settingsArgs(),
  ];
  const parsed = q.parseFinetuneArgs(args);
  if (parsed.kind !== "run") throw new Error("The settings do not describe a run");
  await train(await q.resolveFinetuneRun(parsed, console.warn));
}

async function resume(): Promise<void> {
  $("error").textContent = "";
  await train(await q.resolveFinetuneRun({ kind: "resume", out: OUT, overrides: [] }, console.warn));
}

async function tryIt(): Promise<void> {
  const g = await q.TextGenerator.load(gpu, lastModel, OUT);
  try {
    const r = await g.complete($<HTMLInputElement>("prompt").value, { maxNewTokens: 8 });
    $("output").textContent = r.text;
  } finally {
    g.destroy();
  }
}

const guard = (f: () => Promise<void>) => () => f().catch(fail);

async function main(): Promise<void> {
  if (!("gpu" in navigator)) {
    throw new Error(
      "This browser has no WebGPU: use a recent Chrome or Edge (or Chromium with --enable-unsafe-webgpu)",
    );
  }
  q.setStorage(await q.opfsStorage());
  gpu = await q.requestGpu();
  settingsForm();
  $("start").onclick = guard(start);
  $("resume").onclick = guard(resume);
  $("stop").onclick = () => void (stopRequested = true);
  $("generate").onclick = guard(tryIt);
  $<HTMLInputElement>("folder").onchange = guard(async () => {
    userModelFiles = await copyFiles($<HTMLInputElement>("folder").files ?? [], USER);
    document.querySelector<HTMLInputElement>("input[name=model][value=folder]")!.checked = true;
    $("modelInfo").textContent = `${userModelFiles} files`;
  });
  const drop = $("drop");
  drop.ondragover = (e) => e.preventDefault();
  drop.ondrop = (e) => {
    e.preventDefault();
    guard(async () => {
      userModelFiles = await copyFiles(e.dataTransfer?.files ?? [], USER);
      document.querySelector<HTMLInputElement>("input[name=model][value=folder]")!.checked = true;
      $("modelInfo").textContent = `${userModelFiles} files`;
    })();
  };
  await showResume();
  state.ready = true;
}

main().catch(fail);
