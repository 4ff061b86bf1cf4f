#!/usr/bin/env python3
"""Reference renderer for RocketKV's chat-template tests.

The expected strings in Tests/RocketKVTests/ChatTemplateFixtures.swift are not written by
hand: this script renders every test case with the real Jinja2, configured exactly as Hugging
Face transformers configures it for `apply_chat_template` (ImmutableSandboxedEnvironment with
trim_blocks=True, lstrip_blocks=True, the loopcontrols extension, the `generation` tag, its own
`tojson` filter and the globals `raise_exception` and `strftime_now`), and writes that file.

Templates live in scripts/chat_templates/*.jinja: the published templates of real models
(copied verbatim from llama.cpp's models/templates, from the GGUF for SmolLM2, from
google/gemma-3-*-it's tokenizer_config.json for Gemma 3) plus a few synthetic `feature-*`
templates that exercise Jinja features the real ones do not.

Usage:
  python3 scripts/check_chat_templates.py            # check that the fixtures file is up to date
  python3 scripts/check_chat_templates.py --write    # regenerate it
  python3 scripts/check_chat_templates.py --corpus DIR --out cases.json
      # render every DIR/*.jinja (e.g. llama.cpp's models/templates) with a few conversations
      # into a JSON file; `ROCKETKV_CHAT_TEMPLATE_CORPUS=cases.json swift test --filter
      # ChatTemplateTests/testReferenceCorpus` then compares RocketKV's renderer against it.

Needs only jinja2 (>= 3.1); the SmolLM2 template is cross-checked against the default model's
GGUF when the `gguf` package and the model file are available.
"""

import argparse
import json
import pathlib
import sys
from datetime import datetime

import jinja2
import jinja2.ext
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEMPLATE_DIR = ROOT / "scripts" / "chat_templates"
FIXTURES = ROOT / "Tests" / "RocketKVTests" / "ChatTemplateFixtures.swift"
SMOLLM2_GGUF = pathlib.Path.home() / ".cache" / "rocketkv" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"

# What `strftime_now` sees. The Swift tests pass the same local wall-clock time as `now:`.
FIXED_NOW = datetime(2024, 9, 5, 12, 0, 0)


class GenerationTag(jinja2.ext.Extension):
    """transformers' `{% generation %}...{% endgeneration %}` tag: renders its body unchanged
    (transformers only records where the body lands, for assistant-token masks)."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.Scope(body).set_lineno(lineno)


def environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: FIXED_NOW.strftime(fmt)
    return env


def render(source, messages, add_generation_prompt, bos_token, eos_token):
    """{"output": text} or {"error": message, "kind": "raised" | "other"}, as transformers renders."""
    try:
        template = environment().from_string(source)
    except jinja2.TemplateSyntaxError as error:
        return {"error": str(error), "kind": "syntax"}
    except Exception as error:  # TemplateAssertionError (unknown filter) and friends
        return {"error": str(error), "kind": "syntax"}
    try:
        text = template.render(
            messages=[{"role": role, "content": content} for role, content in messages],
            tools=None, documents=None, add_generation_prompt=add_generation_prompt,
            bos_token=bos_token, eos_token=eos_token)
        return {"output": text}
    except jinja2.TemplateError as error:
        kind = "raised" if type(error) is jinja2.exceptions.TemplateError else "other"
        return {"error": str(error), "kind": kind}
    except Exception as error:
        return {"error": f"{type(error).__name__}: {error}", "kind": "other"}


# ---------------------------------------------------------------------------------------------
# Conversations and cases

HELLO = [("user", "Hello!")]
SYSTEM_USER = [("system", "You are a concise assistant."), ("user", "What is the capital of France?")]
MULTI_TURN = [
    ("user", "Hi there"),
    ("assistant", "Hello! How can I help you today?"),
    ("user", "Tell me a joke about cats."),
]
SYSTEM_MULTI_TURN = [("system", "  Answer in French.  \n")] + MULTI_TURN + [
    ("assistant", "Pourquoi les chats...?"), ("user", " Encore une, s'il te plaît ! ")]
UNICODE = [("user", "  Héllo wörld 👋 — «quotes» \"double\" 'single' \\backslash\t\n")]
USER_USER = [("user", "first"), ("user", "second")]
ASSISTANT_FIRST = [("assistant", "I speak first."), ("user", "ok")]
SYSTEM_ONLY = [("system", "Only a system prompt.")]

LLAMA = ("<|begin_of_text|>", "<|eot_id|>")
GEMMA = ("<bos>", "<eos>")
QWEN = ("", "<|im_end|>")
MISTRAL = ("<s>", "</s>")
SMOL = ("<|im_start|>", "<|im_end|>")
PLAIN = ("<BOS>", "<EOS>")

# (case name, template file stem, messages, add_generation_prompt, (bos, eos))
CASES = [
    ("smollm2.single_user", "smollm2-135m-instruct", HELLO, True, SMOL),
    ("smollm2.system_user", "smollm2-135m-instruct", SYSTEM_USER, True, SMOL),
    ("smollm2.multi_turn", "smollm2-135m-instruct", MULTI_TURN, True, SMOL),
    ("smollm2.multi_turn_no_prompt", "smollm2-135m-instruct", MULTI_TURN, False, SMOL),
    ("smollm2.unicode", "smollm2-135m-instruct", UNICODE, True, SMOL),

    ("llama3.1.system_user", "llama-3.1-8b-instruct", SYSTEM_USER, True, LLAMA),
    ("llama3.1.multi_turn", "llama-3.1-8b-instruct", MULTI_TURN, True, LLAMA),
    ("llama3.1.system_multi_turn_no_prompt", "llama-3.1-8b-instruct", SYSTEM_MULTI_TURN, False, LLAMA),
    ("llama3.1.unicode", "llama-3.1-8b-instruct", UNICODE, True, LLAMA),
    ("llama3.2.single_user", "llama-3.2-3b-instruct", HELLO, True, LLAMA),
    ("llama3.2.system_multi_turn", "llama-3.2-3b-instruct", SYSTEM_MULTI_TURN, True, LLAMA),

    ("gemma3.single_user", "gemma-3-it", HELLO, True, GEMMA),
    ("gemma3.system_user", "gemma-3-it", SYSTEM_USER, True, GEMMA),
    ("gemma3.system_multi_turn", "gemma-3-it", SYSTEM_MULTI_TURN, True, GEMMA),
    ("gemma3.multi_turn_no_prompt", "gemma-3-it", MULTI_TURN, False, GEMMA),
    ("gemma3.unicode", "gemma-3-it", UNICODE, True, GEMMA),
    ("gemma3.system_only", "gemma-3-it", SYSTEM_ONLY, True, GEMMA),
    ("gemma3.user_user", "gemma-3-it", USER_USER, True, GEMMA),
    ("gemma3.assistant_first", "gemma-3-it", ASSISTANT_FIRST, True, GEMMA),

    ("qwen2.5.single_user", "qwen2.5-7b-instruct", HELLO, True, QWEN),
    ("qwen2.5.system_user", "qwen2.5-7b-instruct", SYSTEM_USER, True, QWEN),
    ("qwen2.5.system_multi_turn_no_prompt", "qwen2.5-7b-instruct", SYSTEM_MULTI_TURN, False, QWEN),

    ("mistral_nemo.single_user", "mistral-nemo-instruct-2407", HELLO, True, MISTRAL),
    ("mistral_nemo.multi_turn", "mistral-nemo-instruct-2407", MULTI_TURN, False, MISTRAL),
    ("mistral_nemo.system_multi_turn", "mistral-nemo-instruct-2407", SYSTEM_MULTI_TURN, True, MISTRAL),
    ("mistral_nemo.user_user", "mistral-nemo-instruct-2407", USER_USER, True, MISTRAL),

    ("features.loops", "feature-loops", SYSTEM_MULTI_TURN, True, PLAIN),
    ("features.loops_single", "feature-loops", HELLO, False, PLAIN),
    ("features.expressions", "feature-expressions", SYSTEM_USER, True, PLAIN),
    ("features.filters", "feature-filters", SYSTEM_MULTI_TURN, True, PLAIN),
    ("features.whitespace", "feature-whitespace", MULTI_TURN, True, PLAIN),
    ("features.macros", "feature-macros", SYSTEM_MULTI_TURN, True, PLAIN),
    ("features.undefined_attribute", "feature-undefined", HELLO, True, PLAIN),
    ("features.misc", "feature-misc", MULTI_TURN, True, PLAIN),
]


def load_templates():
    return {path.stem: path.read_text(encoding="utf-8") for path in sorted(TEMPLATE_DIR.glob("*.jinja"))}


def check_smollm2_against_gguf(templates):
    try:
        from gguf import GGUFReader
    except ImportError:
        print("note: gguf package not found; SmolLM2 template not cross-checked with the GGUF", file=sys.stderr)
        return
    if not SMOLLM2_GGUF.exists():
        print(f"note: {SMOLLM2_GGUF} not found; SmolLM2 template not cross-checked", file=sys.stderr)
        return
    field = GGUFReader(str(SMOLLM2_GGUF)).fields["tokenizer.chat_template"]
    if field.contents() != templates["smollm2-135m-instruct"]:
        sys.exit("scripts/chat_templates/smollm2-135m-instruct.jinja differs from the GGUF's tokenizer.chat_template")


# ---------------------------------------------------------------------------------------------
# Swift output

def swift_string(text):
    """A one-line Swift string literal."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif code < 0x20 or code == 0x7F:
            out.append("\\u{%x}" % code)
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def swift_block(text):
    """A multi-line raw Swift string literal holding exactly `text` (closing delimiter at column 0,
    so no indentation is stripped)."""
    hashes = "#"
    while ('"""' + hashes) in text or ("\\" + hashes) in text:
        hashes += "#"
    if "\r" in text:
        return swift_string(text)
    return hashes + '"""\n' + text + '\n"""' + hashes


def generate_swift(templates, results):
    lines = [
        "// Generated by scripts/check_chat_templates.py: do not edit. Expected outputs come from",
        f"// Jinja2 {jinja2.__version__} configured as transformers' apply_chat_template configures it.",
        "// To change a case, edit the script or scripts/chat_templates/*.jinja and run",
        "// `python3 scripts/check_chat_templates.py --write`.",
        "",
        "import RocketKV",
        "",
        "enum ChatTemplateFixtures {",
        "    struct Case {",
        "        let name: String",
        "        let template: String",
        "        let messages: [ChatMessage]",
        "        let addGenerationPrompt: Bool",
        "        let bosToken: String",
        "        let eosToken: String",
        "        /// The reference output; nil when the reference raised `error`.",
        "        let expected: String?",
        "        let error: String?",
        "    }",
        "",
        "    /// Wall-clock time (local) that `strftime_now` formats in the reference.",
        f"    static let now = (year: {FIXED_NOW.year}, month: {FIXED_NOW.month}, day: {FIXED_NOW.day}, "
        f"hour: {FIXED_NOW.hour})",
        "",
        "    /// Template sources by file stem (scripts/chat_templates/STEM.jinja).",
        "    static let templates: [String: String] = [",
    ]
    used = sorted({case[1] for case in CASES})
    for stem in used:
        lines.append(f"        {swift_string(stem)}: " + swift_block(templates[stem]) + ",")
    lines += ["    ]", "", "    static let cases: [Case] = ["]
    for (name, stem, messages, agp, (bos, eos)), result in zip(CASES, results):
        message_list = ", ".join(
            f"ChatMessage(role: {swift_string(role)}, content: {swift_string(content)})" for role, content in messages)
        expected = swift_block(result["output"]) if "output" in result else "nil"
        error = swift_string(result["error"]) if "error" in result else "nil"
        lines.append(
            f"        Case(name: {swift_string(name)}, template: {swift_string(stem)},\n"
            f"             messages: [{message_list}],\n"
            f"             addGenerationPrompt: {'true' if agp else 'false'}, bosToken: {swift_string(bos)}, "
            f"eosToken: {swift_string(eos)},\n"
            f"             expected: {expected},\n"
            f"             error: {error}),")
    lines += ["    ]", "}", ""]
    return "\n".join(lines)


def fixtures_text():
    templates = load_templates()
    check_smollm2_against_gguf(templates)
    results = []
    for name, stem, messages, agp, (bos, eos) in CASES:
        result = render(templates[stem], messages, agp, bos, eos)
        if "error" in result and result["kind"] != "raised":
            sys.exit(f"case {name}: the reference failed unexpectedly: {result['error']}")
        results.append(result)
    return generate_swift(templates, results)


# ---------------------------------------------------------------------------------------------
# Corpus mode

CORPUS_CONVERSATIONS = [
    (HELLO, True), (SYSTEM_USER, True), (MULTI_TURN, True), (MULTI_TURN, False), (SYSTEM_MULTI_TURN, True),
    (UNICODE, True), (USER_USER, True),
]


def corpus(directory, out):
    cases = []
    for path in sorted(pathlib.Path(directory).glob("*.jinja")):
        source = path.read_text(encoding="utf-8")
        for index, (messages, agp) in enumerate(CORPUS_CONVERSATIONS):
            result = render(source, messages, agp, "<s>", "</s>")
            cases.append({
                "name": f"{path.stem}#{index}", "template": source,
                "messages": [{"role": r, "content": c} for r, c in messages],
                "add_generation_prompt": agp, "bos_token": "<s>", "eos_token": "</s>", **result})
    pathlib.Path(out).write_text(json.dumps({"now": FIXED_NOW.isoformat(), "cases": cases}, ensure_ascii=False))
    print(f"wrote {len(cases)} cases from {directory} to {out}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="regenerate the Swift fixtures file")
    parser.add_argument("--corpus", metavar="DIR", help="render every DIR/*.jinja into a JSON file (see --out)")
    parser.add_argument("--out", metavar="FILE", default="chat_template_corpus.json")
    args = parser.parse_args()
    if args.corpus:
        corpus(args.corpus, args.out)
        return
    text = fixtures_text()
    if args.write:
        FIXTURES.write_text(text, encoding="utf-8")
        print(f"wrote {FIXTURES.relative_to(ROOT)} ({len(CASES)} cases)")
    elif not FIXTURES.exists() or FIXTURES.read_text(encoding="utf-8") != text:
        sys.exit(f"{FIXTURES.relative_to(ROOT)} is out of date: run {sys.argv[0]} --write")
    else:
        print(f"{FIXTURES.relative_to(ROOT)} is up to date ({len(CASES)} cases)")


if __name__ == "__main__":
    main()
