"""`minigpt evaluate`: score a responses file of chapter 7 offline (ROUGE-L, exact match) and,
when a judge server is given, with an LLM judge as the book's section 7.8."""

from __future__ import annotations

import json
import sys

from minigpt.cli.common import fail


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="score fine-tuned answers: ROUGE-L and exact match, and optionally an LLM judge",
        description="Score the answers of a responses file (the book's instruction-data-with-response.json, as "
        "`minigpt finetune instruct` writes it) against the reference outputs: ROUGE-L F1 and exact match, always, "
        "with a few examples side by side; with --judge-url or --judge-model also an LLM judge's 0-100 scores "
        "(book section 7.8) from Ollama (.../api/chat) or an OpenAI-compatible server (.../v1/chat/completions).")
    parser.add_argument("responses", metavar="RESPONSES.json", help="a JSON list of entries with 'instruction', 'input', 'output' and the answer")
    parser.add_argument("--json-key", default="model_response", help="the field holding the model's answer (default model_response)")
    parser.add_argument("--examples", type=int, default=5, help="entries to print side by side (default 5)")
    parser.add_argument("--judge-url", default=None,
                        help="the judge's chat endpoint, e.g. http://localhost:11434/api/chat (Ollama, the book's) or "
                        "http://localhost:8080/v1/chat/completions; default Ollama's when only --judge-model is given")
    parser.add_argument("--judge-model", default=None, help="the judge model's name on the server (default llama3, as the book)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each judge reply (default 60)")


def _load(path: str, json_key: str) -> list:
    try:
        with open(path, encoding="utf-8") as file:
            entries = json.load(file)
    except FileNotFoundError:
        fail("evaluate", f"{path!r}: no such file")
    except (ValueError, UnicodeDecodeError) as error:
        fail("evaluate", f"{path!r} is not a JSON file ({error})")
    if not isinstance(entries, list) or not entries:
        fail("evaluate", f"{path!r}: expected a non-empty JSON list of entries")
    for index, entry in enumerate(entries):
        missing = [key for key in ("instruction", "input", "output", json_key) if not isinstance(entry, dict) or not isinstance(entry.get(key), str)]
        if missing:
            fail("evaluate", f"{path!r}: entry {index} has no text field {', '.join(map(repr, missing))}"
                 + (" (pick the answer's field with --json-key)" if json_key in missing else ""))
    return entries


def _indented(text: str) -> str:
    """A multi-line answer with its later lines under the first (after "  reference: ")."""
    return text.replace("\n", "\n" + " " * 13)


def run(args) -> int:
    """Run `minigpt evaluate`."""
    from minigpt.finetune.metrics import score_responses

    if args.examples < 0:
        fail("evaluate", f"--examples must be >= 0, got {args.examples}")
    entries = _load(args.responses, args.json_key)
    result = score_responses(entries, args.json_key)
    count = result["count"]
    print(f"responses: {args.responses}: {count} entries, {args.json_key!r} against the reference 'output'")
    print(f"ROUGE-L F1: {result['rouge_l_f1']:.3f} | exact match: {100 * result['exact_match']:.1f} % "
          f"({sum(result['exact'])} of {count})")
    for entry, score in list(zip(entries, result["rouge_l"]))[:args.examples]:
        instruction = entry["instruction"] + (f" [{entry['input']}]" if entry["input"] else "")
        reference, answer = (_indented(entry[key]) for key in ("output", args.json_key))
        print(f"\n{instruction}\n  reference: {reference}\n  model:     {answer}\n  ROUGE-L F1 {score.fmeasure:.2f}")

    if args.judge_url is None and args.judge_model is None:
        return 0
    from minigpt.finetune.judge import OLLAMA_URL, JudgeError, api_of, generate_model_scores

    url, model = args.judge_url or OLLAMA_URL, args.judge_model or "llama3"
    try:
        api = api_of(url)
    except ValueError as error:
        fail("evaluate", f"--judge-url: {error}")
    print(f"\njudge: {model} at {url} ({'Ollama' if api == 'ollama' else 'OpenAI-compatible'} API)")
    try:
        scores = generate_model_scores(entries, args.json_key, model=model, url=url, timeout=args.timeout)
    except JudgeError as error:
        fail("evaluate", f"judge: {error}")
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    print(f"Number of scores: {len(scores)} of {count}")
    if scores:
        print(f"Average score: {sum(scores) / len(scores):.2f}")
    return 0
