"""An LLM as a judge of the fine-tuned model's answers (book section 7.8), over HTTP.

The book scores each test answer with Llama 3 (8B) served by Ollama: it sends the prompt, the
reference output and the model's answer, asks for a score from 0 to 100, and averages the
scores (its gpt2-medium: 49.45). This module is that client, on Python's standard library
(`urllib`), for two kinds of local server:

- Ollama's chat endpoint, `http://localhost:11434/api/chat` (the book's default), which streams
  one JSON object per line, each with a piece of `message.content`; the book's options make the
  answer deterministic: seed 123, temperature 0, a context of 2,048 tokens (`num_ctx`);
- the OpenAI-compatible `.../v1/chat/completions` that llama.cpp's server, vLLM, LM Studio and
  Ollama itself also speak: one JSON object, the answer in `choices[0].message.content`, with
  the same seed and temperature (that API has no context-size option).

The endpoint is chosen by the URL's path. Every failure of the server is a `JudgeError` whose
message says what happened and at which URL: connection refused, no answer within the timeout,
an HTTP error status (with the server's own message), a body that is not JSON or lacks the
answer. A reply that is not a score is not an error: `parse_score` returns None for it and
`generate_model_scores` reports it and goes on, as the book does.

References: Raschka, "Build a Large Language Model (From Scratch)", section 7.8 (check_if_running,
query_model, generate_model_scores) and ch07/01_main-chapter-code/ollama_evaluate.py; Ollama API
documentation (POST /api/chat); OpenAI API reference (POST /v1/chat/completions); Zheng et al.
2023, "Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena".
"""

from __future__ import annotations

import json
import os
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence

from tqdm.auto import tqdm

from minigpt.finetune.instruction import format_input

__all__ = [
    "OLLAMA_URL",
    "JudgeError",
    "check_if_running",
    "api_of",
    "query_model",
    "format_judge_prompt",
    "parse_score",
    "generate_model_scores",
]

# The book's default: Ollama on this machine.
OLLAMA_URL = "http://localhost:11434/api/chat"
# The book's settings "required for deterministic responses".
SEED, TEMPERATURE, NUM_CTX = 123, 0, 2048


class JudgeError(RuntimeError):
    """The judge's server could not be reached or gave an answer that is not a chat reply."""


def check_if_running(process_name: str = "ollama") -> bool:
    """True when a process whose name contains `process_name` runs on this machine (book 7.8).

    The book asks psutil; this reads the process names from Linux's /proc, and uses psutil
    where there is no /proc (install it on macOS or Windows).

    Raises:
        RuntimeError: no /proc and no psutil.
    """
    if os.path.isdir("/proc/self"):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(os.path.join(entry.path, "comm"), encoding="utf-8", errors="replace") as file:
                    name = file.read().strip()
            except OSError:  # the process ended while we looked, or is not ours to read
                continue
            if process_name in name:
                return True
        return False
    try:
        import psutil
    except ImportError:
        raise RuntimeError("check_if_running: this system has no /proc; install psutil (pip install psutil)") from None
    return any(process_name in (process.info["name"] or "") for process in psutil.process_iter(["name"]))


def api_of(url: str) -> str:
    """Which chat API a URL speaks: "ollama" for a path ending in /api/chat, "openai" for
    /chat/completions (e.g. /v1/chat/completions).

    Raises:
        ValueError: not an http(s) URL, or a path that is neither.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"url: expected an http:// or https:// URL, received {url!r}")
    path = parts.path.rstrip("/")
    if path.endswith("/api/chat"):
        return "ollama"
    if path.endswith("/chat/completions"):
        return "openai"
    raise ValueError(
        f"url: expected the full chat endpoint, ending in /api/chat (Ollama, e.g. {OLLAMA_URL}) or in "
        f"/v1/chat/completions (OpenAI-compatible servers), received {url!r}"
    )


def _post_json(url: str, payload: dict, timeout: float) -> bytes:
    """POST `payload` as JSON and return the whole body; every failure becomes a JudgeError."""
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode("utf-8"), method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()
    except urllib.error.HTTPError as error:
        body = error.read().decode("utf-8", errors="replace")
        try:  # Ollama: {"error": "..."}; OpenAI: {"error": {"message": "..."}}
            detail = json.loads(body)["error"]
            detail = detail.get("message", detail) if isinstance(detail, dict) else detail
        except (ValueError, KeyError, TypeError):
            detail = body[:200]
        raise JudgeError(f"{url} answered HTTP {error.code} {error.reason}: {detail}") from None
    except urllib.error.URLError as error:
        reason = error.reason
        if isinstance(reason, ConnectionRefusedError):
            raise JudgeError(f"could not connect to {url}: connection refused (is the server running? for Ollama: `ollama serve`)") from None
        if isinstance(reason, (TimeoutError, socket.timeout)):
            raise JudgeError(f"no answer from {url} within {timeout:g} s (timeout)") from None
        raise JudgeError(f"could not reach {url}: {reason}") from None
    except (TimeoutError, socket.timeout):  # connected, but the body did not come in time
        raise JudgeError(f"no answer from {url} within {timeout:g} s (timeout while reading the reply)") from None
    except (ConnectionError, OSError) as error:  # the server hung up half way, say
        raise JudgeError(f"the connection to {url} failed while reading the reply: {error}") from None


def _json_or_error(text: str, url: str):
    try:
        return json.loads(text)
    except ValueError:
        raise JudgeError(f"the reply of {url} is not valid JSON: {text[:200]!r}") from None


def query_model(prompt: str, model: str = "llama3", url: str = OLLAMA_URL, timeout: float = 30.0) -> str:
    """Send one user message to a chat server and return its whole reply (book section 7.8).

    Ollama (`.../api/chat`) gets the book's payload, {"model", "messages", "options": {"seed": 123,
    "temperature": 0, "num_ctx": 2048}}, and streams JSON lines whose `message.content` pieces
    are joined. An OpenAI-compatible server (`.../v1/chat/completions`) gets {"model",
    "messages", "seed": 123, "temperature": 0, "stream": false} and answers in
    `choices[0].message.content`.

    Args:
        prompt: the user message.
        model: the model's name on the server ("llama3" as the book).
        url: the chat endpoint (see `api_of`).
        timeout: seconds to wait for the connection and for each read of the reply.

    Returns:
        The reply text.

    Raises:
        ValueError: a URL of neither API.
        JudgeError: connection refused, timeout, an HTTP error status, a reply that is not JSON
            or has no message content (the message names the URL).
    """
    api = api_of(url)
    messages = [{"role": "user", "content": prompt}]
    if api == "ollama":
        payload = {"model": model, "messages": messages, "options": {"seed": SEED, "temperature": TEMPERATURE, "num_ctx": NUM_CTX}}
    else:
        payload = {"model": model, "messages": messages, "seed": SEED, "temperature": TEMPERATURE, "stream": False}
    body = _post_json(url, payload, timeout).decode("utf-8", errors="replace")

    if api == "openai":
        reply = _json_or_error(body, url)
        try:
            content = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise JudgeError(f"the reply of {url} has no choices[0].message.content: {body[:200]!r}") from None
        if not isinstance(content, str):
            raise JudgeError(f"the reply of {url} has a message content that is not text: {content!r}")
        return content

    # Ollama streams one JSON object per line (a non-streamed reply is one such line).
    pieces, found = [], False
    for line in body.splitlines():
        if not line.strip():
            continue
        chunk = _json_or_error(line, url)
        if not isinstance(chunk, dict):
            raise JudgeError(f"the reply of {url} has a line that is not a JSON object: {line[:200]!r}")
        if "error" in chunk:
            raise JudgeError(f"{url} answered with an error: {chunk['error']}")
        if "message" in chunk:
            content = chunk["message"].get("content") if isinstance(chunk["message"], dict) else None
            if not isinstance(content, str):
                raise JudgeError(f"the reply of {url} has a message without text content: {line[:200]!r}")
            pieces.append(content)
            found = True
    if not found:
        raise JudgeError(f"the reply of {url} holds no message (expected JSON lines with message.content): {body[:200]!r}")
    return "".join(pieces)


def format_judge_prompt(entry: Mapping, json_key: str) -> str:
    """The book's scoring prompt for one entry: its input, the reference output, the model's answer."""
    return (
        f"Given the input `{format_input(entry)}` "
        f"and correct output `{entry['output']}`, "
        f"score the model response `{entry[json_key]}`"
        f" on a scale from 0 to 100, where 100 is the best score. "
        f"Respond with the integer number only."
    )


_NUMBER = r"(\d+(?:\.\d+)?)"


def parse_score(reply: str) -> int | float | None:
    """Read a 0-100 score from a judge's reply; None when the reply holds no clear score.

    Accepted, in this order: the reply is a number alone ("85", " 85.\\n", "**85**"); a number
    "out of 100" or "/100" ("I'd rate it 85 out of 100"); the only number in the reply ("Score:
    85"). A number outside 0..100 or several different numbers without "out of 100" give None.

    Returns:
        An int (a float when the judge gave a fraction, e.g. 72.5), or None.
    """
    text = reply.strip().strip("*`'\".").strip()
    match = re.fullmatch(_NUMBER, text)
    if match is None:
        match = re.search(_NUMBER + r"\s*(?:/|out of)\s*100\b", text)
    if match is None:
        numbers = set(re.findall(_NUMBER, text))
        if len(numbers) != 1:
            return None
        match = re.search(_NUMBER, text)
    value = float(match.group(1))
    if not 0 <= value <= 100:
        return None
    return int(value) if value.is_integer() else value


def generate_model_scores(
    json_data: Sequence[Mapping],
    json_key: str,
    model: str = "llama3",
    url: str = OLLAMA_URL,
    timeout: float = 30.0,
) -> list:
    """Score every entry's answer under `json_key` with the judge (book section 7.8).

    As the book's ollama_evaluate.py: an empty answer scores 0 without asking the judge; a reply
    that `parse_score` cannot read is printed ("Could not convert score: ...") and left out, so
    `len(scores)` < `len(json_data)` says how many were not scored.

    Returns:
        The list of scores (ints, or floats for fractional replies), in entry order.

    Raises:
        ValueError: an entry without a str under `json_key` or "output" (named by index).
        JudgeError: the server failed (see `query_model`); scoring stops there.
    """
    for index, entry in enumerate(json_data):
        for key in (json_key, "output"):
            if not isinstance(entry.get(key), str):
                raise ValueError(f"json_data: entry {index} has no str field {key!r} (its keys: {sorted(entry)})")
    scores = []
    for entry in tqdm(json_data, desc="Scoring entries"):
        if entry[json_key] == "":
            scores.append(0)
            continue
        reply = query_model(format_judge_prompt(entry, json_key), model=model, url=url, timeout=timeout)
        score = parse_score(reply)
        if score is None:
            tqdm.write(f"Could not convert score: {reply!r}")
            continue
        scores.append(score)
    return scores
