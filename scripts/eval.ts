/**
 * `deno task eval --model DIR --data FILE [--fake-quant w4a8kv4] [--teacher DIR] [--json]`: perplexity over the
 * data's trained tokens, fake-quantized as LLM-QAT trains, and the mean KL to a full-precision teacher.
 *
 * @module
 */

import { flagHelp, type FlagTable, intFlag, parseFlags, switchFlag, textFlag } from "../lib/flags.ts";
import { requestGpu } from "../lib/gpu/device.ts";
import { LlamaModel } from "../lib/model/llama.ts";
import { FULL_PRECISION, parseQatBits } from "../lib/qlinear/qat_bits.ts";
import { evaluate, readEvalExamples } from "../lib/qat/eval.ts";

interface EvalCliOptions {
  model: string;
  data: string;
  fakeQuant: string | null;
  teacher: string | null;
  maxSeqLen: number | null;
  json: boolean;
}

const FLAGS: FlagTable<EvalCliOptions> = {
  model: textFlag("DIR", "Hugging Face model folder (run as dense f32)", { required: true }),
  data: textFlag("FILE", "JSONL: generated ids (qat-data) or any finetune data format", { required: true }),
  fakeQuant: textFlag("WAKV", "fake-quantize as LLM-QAT trains: w4a8kv4, w8a8kv8, … (default: full precision)"),
  teacher: textFlag("DIR", "full-precision teacher folder: also report the mean KL to it"),
  maxSeqLen: intFlag("N", "truncate longer sequences", { min: 2, default: null, unset: "the model's context" }),
  json: switchFlag("print one JSON object: perplexity, tokens (and kl)"),
};

try {
  const o = parseFlags(FLAGS, Deno.args);
  if (!o) {
    console.log(`Perplexity (and KL to a teacher) of a model over a data file.\n\nOptions:\n${flagHelp(FLAGS)}`);
    Deno.exit(0);
  }
  const gpu = await requestGpu();
  const bits = o.fakeQuant === null ? FULL_PRECISION : parseQatBits(o.fakeQuant);
  const model = await LlamaModel.load(gpu, o.model, { lora: null, qat: { bits } });
  const teacher = o.teacher === null
    ? null
    : await LlamaModel.load(gpu, o.teacher, { lora: null, qat: { bits: FULL_PRECISION } });
  const examples = await readEvalExamples(o.data, o.model, o.maxSeqLen ?? model.config.maxPositionEmbeddings);
  const r = await evaluate(model, examples, teacher);
  if (o.json) console.log(JSON.stringify(r));
  else {console.log(
      `perplexity ${r.perplexity.toFixed(4)} over ${r.tokens} tokens${
        r.kl === undefined ? "" : `; KL ${r.kl.toFixed(5)}`
      }`,
    );}
  model.destroy();
  teacher?.destroy();
} catch (e) {
  console.error(`Error: ${(e as Error).message}`);
  Deno.exit(1);
}
