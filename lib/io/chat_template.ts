/**
 * A model's chat template as transformers' `apply_chat_template` renders it: compiled once with
 * `@huggingface/jinja` when the tokenizer loads, with errors that name `tokenizer_config.json` (and what was being
 * rendered).
 *
 * `@huggingface/jinja` (0.5.x, up to 0.5.13) ignores the argument of the string methods `strip`, `lstrip` and
 * `rstrip` and always strips all whitespace, so Qwen3's `content.strip('\n')` keeps no spaces of `"  6 (six).  "`
 * where Python keeps them. Importing this module replaces those three methods with Python's `str` semantics.
 *
 * @module
 */

import { Environment, Interpreter, parse, Template, tokenize } from "@huggingface/jinja";

/**
 * A compiled chat template.
 *
 * @example Python's strip(chars), and errors naming the file
 * ```ts
 * import { ChatTemplate } from "@qlora/webgpu/io";
 * import assert from "node:assert/strict";
 * const t = new ChatTemplate("[{{ messages[0].content.strip('\\n') }}]", "m/tokenizer_config.json");
 * assert.equal(t.render({ messages: [{ role: "user", content: "\n  6 (six).  \n" }] }), "[  6 (six).  ]");
 * assert.throws(() => new ChatTemplate("{% if x %}", "m/tokenizer_config.json"), /m\/tokenizer_config\.json: chat_template/);
 * ```
 */
export class ChatTemplate {
  /** The template source. */
  readonly source: string;
  /** The file it came from, for error messages. */
  readonly file: string;
  #template: Template;

  /**
   * Compiles the template.
   *
   * @param source The Jinja source (`chat_template` of `tokenizer_config.json`).
   * @param file The file it came from, for error messages.
   * @throws {Error} Naming `file` when the template does not parse (an unclosed tag, a bad expression).
   */
  constructor(source: string, file = "tokenizer_config.json") {
    this.source = source;
    this.file = file;
    try {
      this.#template = new Template(source);
    } catch (e) {
      // An unclosed block runs the parser off the end of the tokens ("reading 'type'" of undefined).
      const msg = (e as Error).message;
      const why = /reading 'type'/.test(msg) ? "a {% ... %} block is not closed" : msg;
      throw new Error(`${file}: chat_template does not compile: ${why}`);
    }
  }

  /**
   * Renders the template.
   *
   * @param vars The template variables (`messages`, `add_generation_prompt`, `bos_token`, ...).
   * @param where What is being rendered (a data file and line), for error messages.
   * @returns The rendered text.
   * @throws {Error} Naming the file and `where` when rendering fails (including the template's `raise_exception`).
   */
  render(vars: Record<string, unknown>, where?: string): string {
    try {
      return this.#template.render(vars);
    } catch (e) {
      const at = where === undefined ? "" : ` for ${where}`;
      throw new Error(`${this.file}: chat_template failed${at}: ${(e as Error).message}`);
    }
  }
}

/** Python's whitespace for `str.strip()` with no argument (JavaScript's `trim` differs at U+001C–U+001F, U+0085, U+FEFF). */
const _PY_SPACE = "\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008" +
  "\u2009\u200a\u2028\u2029\u202f\u205f\u3000";

/** Python's `str.strip/lstrip/rstrip(chars)`: `chars` null or undefined strips whitespace. */
function _pyStrip(s: string, chars: unknown, left: boolean, right: boolean): string {
  const set = typeof chars === "string" ? chars : _PY_SPACE;
  let a = 0;
  let b = s.length;
  if (left) { while (a < b && set.includes(s[a])) a++; }
  if (right) { while (b > a && set.includes(s[b - 1])) b--; }
  return s.slice(a, b);
}

type _Builtins = Map<string, unknown>;
type _FunctionCtor = new (fn: (args: { value: unknown }[]) => unknown) => unknown;

/**
 * Replaces `strip`, `lstrip`, `rstrip` in the builtins of the package's string values. Its `StringValue` class is
 * not exported: it is reached through a rendered value's prototype, and its `FunctionValue` through a builtin.
 */
function _fixStrip(): void {
  const sample = new Interpreter(new Environment()).run(parse(tokenize("{{ '' }}")));
  const proto = Object.getPrototypeOf(sample);
  const getter = Object.getOwnPropertyDescriptor(proto, "builtins")?.get;
  if (getter === undefined) {
    throw new Error("@huggingface/jinja: string values have no builtins getter; update lib/io/chat_template.ts");
  }
  const StringCtor = proto.constructor as new (v: string) => unknown;
  const fixed = new WeakSet<_Builtins>();
  Object.defineProperty(proto, "builtins", {
    configurable: true,
    get(this: { value: string }): _Builtins {
      const map = getter.call(this) as _Builtins;
      if (fixed.has(map)) return map;
      const FunctionCtor = (map.get("upper") as { constructor: _FunctionCtor }).constructor;
      const method = (left: boolean, right: boolean) =>
        new FunctionCtor((args) => new StringCtor(_pyStrip(this.value, args[0]?.value, left, right)));
      map.set("strip", method(true, true));
      map.set("lstrip", method(true, false));
      map.set("rstrip", method(false, true));
      fixed.add(map);
      return map;
    },
  });
}

_fixStrip();
