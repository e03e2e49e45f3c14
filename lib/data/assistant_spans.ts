/**
 * Where the assistant turns of a rendered conversation are, in characters: what TRL's assistant masks
 * (`return_assistant_tokens_mask`, a `{% generation %}` block around each assistant turn) cover, found in the
 * stock template's render without `{% generation %}` markers and without rendering prefixes of the conversation.
 *
 * @module
 */

import type { ChatMessage } from "../io/tokenizer.ts";

/**
 * The character span of each assistant turn in `text`, the render of `messages`: from the turn's content through
 * the end-of-turn token that follows it (a special token after nothing but whitespace, e.g. `<|eot_id|>`,
 * `<|im_end|>`, `<end_of_turn>`); the template's header before the content and anything after the end-of-turn
 * token are not in it.
 *
 * Messages are found in order, each after the one before, so a user turn that repeats an assistant's words is not
 * taken for it; an assistant content must end with an end-of-turn token when the template writes special tokens,
 * so a header holding the same words is not taken for it either. A content is looked for as given, then trimmed
 * (templates often `| trim` it), then, when it holds a `</think>` block, as its answer after `</think>` (Qwen3
 * drops the reasoning of earlier turns); when the reasoning is rendered right before the answer, the span starts
 * at its `<think>`.
 *
 * @param text The rendered conversation.
 * @param messages The conversation.
 * @param specialTokens The tokenizer's special token strings (end-of-turn candidates).
 * @param where The data file and line, for errors.
 * @returns `[start, end)` character ranges, one per assistant turn, in order.
 * @throws {Error} Naming `where` and the turn when an assistant turn is empty or its content is not in `text`.
 *
 * @example A Llama-3-style render
 * ```ts
 * import { assistantSpans } from "@qlora/webgpu/data";
 * import assert from "node:assert/strict";
 * const text = "<u>hi<eot><a>yo<eot>";
 * const messages = [{ role: "user", content: "hi" }, { role: "assistant", content: " yo" }];
 * const [[s, e]] = assistantSpans(text, messages, ["<eot>"], "d.jsonl:1");
 * assert.equal(text.slice(s, e), "yo<eot>");
 * assert.throws(() => assistantSpans("<u>hi<eot>", messages, ["<eot>"], "d.jsonl:1"), /d\.jsonl:1: assistant turn 1/);
 * ```
 */
export function assistantSpans(
  text: string,
  messages: readonly ChatMessage[],
  specialTokens: readonly string[],
  where: string,
): [number, number][] {
  const spans: [number, number][] = [];
  let cursor = 0;
  messages.forEach((m, i) => {
    const assistant = m.role === "assistant";
    if (assistant && m.content.trim() === "") {
      throw new Error(`${where}: assistant turn ${i} is empty, so it has no tokens to train on`);
    }
    const found = _find(text, m.content, cursor, specialTokens, assistant);
    if (found === null) {
      if (!assistant) return; // templates may leave a turn out (or move a system prompt); nothing to train there
      throw new Error(
        `${where}: assistant turn ${i} is not in the chat template's render (its content ` +
          `${JSON.stringify(m.content.slice(0, 40))} is not found after the turns before it)`,
      );
    }
    if (assistant) spans.push([found.start, found.end]);
    cursor = found.end;
  });
  return spans;
}

/**
 * Where `content` is, at or after `from`: the earliest place of any of its forms. An assistant turn: the first place followed by
 * whitespace and a special token (the span runs through that token), or, when the template writes no special token
 * after `from`, the first mention. Another turn: the first mention, or a later one that ends with a special token
 * within the same turn (so a header that happens to hold the words is skipped).
 */
function _find(
  text: string,
  content: string,
  from: number,
  specials: readonly string[],
  assistant: boolean,
): { start: number; end: number } | null {
  let best: { start: number; end: number } | null = null;
  for (const form of _forms(content)) {
    const found = _findForm(text, form, from, specials, assistant);
    if (found !== null && (best === null || found.start < best.start)) best = found;
  }
  if (best === null || !assistant) return best;
  return { start: _thinkStart(text, content, from, best.start), end: best.end };
}

/** {@linkcode _find} for one form of the content. */
function _findForm(
  text: string,
  form: string,
  from: number,
  specials: readonly string[],
  assistant: boolean,
): { start: number; end: number } | null {
  const first = text.indexOf(form, from);
  if (first < 0) return null;
  const limit = assistant ? text.length : _nextSpecial(text, first, specials);
  for (let p = first; p >= 0 && p < limit; p = text.indexOf(form, p + 1)) {
    const end = _turnEnd(text, p + form.length, specials);
    if (end !== null) return { start: p, end };
  }
  // Another turn, or a template without end-of-turn tokens: the first mention.
  return !assistant || !specials.some((s) => text.includes(s, from))
    ? { start: first, end: first + form.length }
    : null;
}

/** Where the first special token at or after `i` starts (the end of the text when none). */
function _nextSpecial(text: string, i: number, specials: readonly string[]): number {
  return Math.min(text.length, ...specials.map((s) => text.indexOf(s, i)).filter((j) => j >= 0));
}

/** The end of the special token that follows position `i` after nothing but whitespace, or null. */
function _turnEnd(text: string, i: number, specials: readonly string[]): number | null {
  const ws = /\s*/y;
  ws.lastIndex = i;
  const at = i + ws.exec(text)![0].length;
  const special = specials.find((s) => text.startsWith(s, at));
  return special === undefined ? null : at + special.length;
}

/** The forms a template may render a content in: as is, trimmed, its answer after a `</think>` block. */
function _forms(content: string): string[] {
  const forms = [content, content.trim()];
  if (content.includes("</think>")) forms.push(content.split("</think>").at(-1)!.trim());
  return [...new Set(forms)].filter((f) => f.length > 0);
}

/** Where the rendered `<think>` block of `content` starts when it sits between `from` and the answer at `p`. */
function _thinkStart(text: string, content: string, from: number, p: number): number {
  if (!content.includes("</think>")) return p;
  const reasoning = content.split("</think>")[0].split("<think>").at(-1)!.trim();
  const open = text.lastIndexOf("<think>", p);
  return open >= from && text.slice(open, p).includes(reasoning) ? open : p;
}
