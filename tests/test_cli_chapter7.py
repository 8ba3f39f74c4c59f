"""The chapter-7 commands: `minigpt evaluate`, `minigpt finetune instruct`, `minigpt chat`."""

import json
import shutil
from pathlib import Path

import pytest

from fake_judge import FakeJudge
from minigpt.cli import main

FIXTURES = Path(__file__).resolve().parent / "fixtures"
RESPONSES = FIXTURES / "instruction" / "instruction-data-with-response.json"


def test_evaluate_offline(capsys):
    assert main(["evaluate", str(RESPONSES), "--examples", "1"]) == 0
    out = capsys.readouterr().out
    assert "110 entries" in out
    assert "ROUGE-L F1: 0.583 | exact match: 15.5 % (17 of 110)" in out
    assert "  reference: The car is as fast as lightning.\n  model:     The car is as fast as a bullet." in out
    assert "cumulonimbus" not in out  # only one example asked for
    assert "judge" not in out


def test_evaluate_with_a_judge(tmp_path, capsys):
    entries = json.loads(RESPONSES.read_text())[:3]
    path = tmp_path / "responses.json"
    path.write_text(json.dumps(entries))
    with FakeJudge(["80", "not sure", "60"]) as judge:
        assert main(["evaluate", str(path), "--judge-url", judge.url("/v1/chat/completions"), "--judge-model", "qwen"]) == 0
    out = capsys.readouterr().out
    assert "judge: qwen at http://127.0.0.1:" in out and "(OpenAI-compatible API)" in out
    assert "Could not convert score: 'not sure'" in out
    assert "Number of scores: 2 of 3\nAverage score: 70.00" in out
    assert judge.requests[0][1]["model"] == "qwen"


def test_evaluate_errors(tmp_path):
    with FakeJudge(mode="not-found") as judge:
        with pytest.raises(SystemExit, match="minigpt evaluate: error: judge: .* answered HTTP 404 .*llama3"):
            main(["evaluate", str(RESPONSES), "--judge-url", judge.url()])
    with pytest.raises(SystemExit, match="--judge-url: url: expected the full chat endpoint"):
        main(["evaluate", str(RESPONSES), "--judge-url", "http://localhost:11434"])
    with pytest.raises(SystemExit, match="no such file"):
        main(["evaluate", str(tmp_path / "missing.json")])
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"instruction": "a", "input": "", "output": "b"}]))
    with pytest.raises(SystemExit, match="entry 0 has no text field 'model_response' \\(pick the answer's field with --json-key\\)"):
        main(["evaluate", str(path)])
