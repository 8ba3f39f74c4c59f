"""minigpt.finetune.judge: the LLM-judge client against a fake Ollama / OpenAI-compatible server."""

import json
import os
import socket
from pathlib import Path

import pytest

from support.fake_judge import FakeJudge
from minigpt.finetune.judge import (
    JudgeError,
    api_of,
    check_if_running,
    format_judge_prompt,
    generate_model_scores,
    parse_score,
    query_model,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "instruction"
ENTRY = {"instruction": "Name the author of 'Pride and Prejudice'.", "input": "", "output": "Jane Austen.",
         "model_response": "The author of 'Pride and Prejudice' is Jane Austen."}


def test_ollama_payload_and_streamed_reply():
    with FakeJudge(["Llamas are herbivores."]) as judge:
        assert query_model("What do Llamas eat?", url=judge.url("/api/chat")) == "Llamas are herbivores."
    path, payload = judge.requests[0]
    assert path == "/api/chat"
    assert payload == {"model": "llama3", "messages": [{"role": "user", "content": "What do Llamas eat?"}],
                       "options": {"seed": 123, "temperature": 0, "num_ctx": 2048}}


def test_openai_compatible_payload_and_reply():
    with FakeJudge(["72"]) as judge:
        assert query_model("score this", model="qwen", url=judge.url("/v1/chat/completions")) == "72"
    path, payload = judge.requests[0]
    assert path == "/v1/chat/completions"
    assert payload == {"model": "qwen", "messages": [{"role": "user", "content": "score this"}],
                       "seed": 123, "temperature": 0, "stream": False}


@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions"])
@pytest.mark.parametrize(
    "mode, message",
    [
        ("bad-json", "is not valid JSON: '<html>not json</html>'"),
        ("not-found", "answered HTTP 404 Not Found: .*llama3"),
        ("no-message", "has no choices\\[0\\].message.content|holds no message"),
    ],
)
def test_server_faults_give_clear_errors(path, mode, message):
    with FakeJudge(mode=mode) as judge:
        with pytest.raises(JudgeError, match=message):
            query_model("hi", url=judge.url(path))


def test_timeout():
    with FakeJudge(mode="slow", delay=1.0) as judge:
        with pytest.raises(JudgeError, match=r"no answer from http://127.0.0.1:\d+/api/chat within 0.2 s"):
            query_model("hi", url=judge.url(), timeout=0.2)


def test_connection_refused():
    with socket.socket() as probe:  # a port that was free a moment ago, with nobody listening now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(JudgeError, match=f"could not connect to http://127.0.0.1:{port}/api/chat: connection refused"):
        query_model("hi", url=f"http://127.0.0.1:{port}/api/chat", timeout=2)


def test_url_must_name_a_chat_endpoint():
    assert api_of("http://localhost:11434/api/chat") == "ollama"
    assert api_of("http://localhost:8080/v1/chat/completions/") == "openai"
    with pytest.raises(ValueError, match="url: expected the full chat endpoint, ending in /api/chat"):
        query_model("hi", url="http://localhost:11434")
    with pytest.raises(ValueError, match="url: expected an http:// or https:// URL"):
        api_of("localhost:11434/api/chat")


@pytest.mark.parametrize(
    "reply, score",
    [("85", 85), (" 85.\n", 85), ("**100**", 100), ("0", 0), ("72.5", 72.5),
     ("I'd rate the model response an 85 out of 100.", 85), ("Score: 40/100", 40), ("Score: 40", 40),
     ("I would give it 3 points, no, 7", None), ("excellent", None), ("150", None), ("", None)],
)
def test_parse_score(reply, score):
    assert parse_score(reply) == score


def test_judge_prompt_is_the_books():
    assert format_judge_prompt(ENTRY, "model_response") == (
        "Given the input `Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\nName the author of 'Pride and Prejudice'.` and correct output "
        "`Jane Austen.`, score the model response `The author of 'Pride and Prejudice' is Jane Austen.` on a scale "
        "from 0 to 100, where 100 is the best score. Respond with the integer number only."
    )


def test_generate_model_scores_counts_unreadable_replies(capsys):
    entries = json.loads((FIXTURES / "instruction-data-with-response.json").read_text())[:4]
    entries[2] = {**entries[2], "model_response": ""}  # an empty answer scores 0, unasked
    with FakeJudge(["90", "I cannot score this.", "40 out of 100"]) as judge:
        scores = generate_model_scores(entries, "model_response", url=judge.url())
    assert scores == [90, 0, 40]  # entry 1's reply is not a number: reported and left out
    assert len(judge.requests) == 3
    assert judge.requests[0][1]["messages"][0]["content"] == format_judge_prompt(entries[0], "model_response")
    assert "Could not convert score: 'I cannot score this.'" in capsys.readouterr().out
    with pytest.raises(ValueError, match="entry 0 has no str field 'answer'"):
        generate_model_scores(entries, "answer")


def test_check_if_running():
    with open(f"/proc/{os.getpid()}/comm") as file:
        own_name = file.read().strip()
    assert check_if_running(own_name)
    assert not check_if_running("no-such-process-name-minigpt")
