"""`minigpt serve`: the batching engine against unbatched generation, every endpoint and error over
real HTTP (uvicorn in a thread), the official `openai` client, `minigpt evaluate --judge-url` with
a minigpt server as its judge, and the command itself (a missing extra, SIGTERM mid-answer)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from support.serve_support import SlowModel, always_says, running, save_classifier, save_run, tiny_model
from minigpt.cli import main
from minigpt.generate import generate
from minigpt.serve import BatchEngine, GenerationRequest, ServedModel, load_served_model
from minigpt.serve.app import create_app
from minigpt.tokenizer import get_encoding

TOKENIZER = get_encoding("gpt2")
ROOT = Path(__file__).resolve().parent.parent


def served(model, kind="base", name="tiny"):
    return ServedModel(model, TOKENIZER, kind, name, "test", TOKENIZER.eot_token)


def collect(prompt_ids, max_tokens, **settings):
    """A request whose events are kept in a list."""
    events = []
    return GenerationRequest(list(prompt_ids), max_tokens, events.append, **settings), events


def text_of(events):
    assert events[-1][0] == "done", events
    return "".join(event[1] for event in events if event[0] == "text")


# --------------------------------------------------------------------------------------------
# The engine: one batch gives each row what it gets alone
# --------------------------------------------------------------------------------------------

def test_a_batch_of_prompts_of_different_lengths_equals_generating_each_alone():
    model = tiny_model(seed=1)
    prompts = [TOKENIZER.encode(text) for text in ("Every effort moves you", "Hi", "The quick brown fox jumps over the dog")]
    engine = BatchEngine(model, TOKENIZER, eos_id=None)
    requests = [collect(prompt, 12, temperature=0.0) for prompt in prompts]
    engine.run_together([request for request, _ in requests])
    for prompt, (_, events) in zip(prompts, requests):
        alone = generate(model, np.array([prompt]), 12, 64, temperature=0.0)[0, len(prompt):]
        assert text_of(events) == TOKENIZER.decode(alone.tolist())
        assert events[-1] == ("done", "length", 12)


def test_requests_that_join_and_leave_between_steps_get_what_they_get_alone():
    model = tiny_model(seed=6)
    engine = BatchEngine(model, TOKENIZER, eos_id=None)
    texts = ["Hi there", "It was a bright cold day in April, and the clocks were striking thirteen", "Yes",
             "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen"]
    prompts = [TOKENIZER.encode(text) for text in texts]
    wanted = [6, 40, 30, 200]  # the second joins with a longer prompt (the others move right), the last fills the context
    requests = [collect(prompt, count, temperature=0.0) for prompt, count in zip(prompts, wanted)]
    engine.admit([requests[0][0]])
    for joining, steps in ((1, 3), (2, 2), (3, 1)):
        for _ in range(steps):
            engine.step()
        engine.admit([requests[joining][0]])
    assert len(engine.rows) == 3  # the first one finished after its 6 tokens and left
    while engine.rows:
        engine.step()
    assert engine.largest_batch == 3
    for prompt, count, (_, events) in zip(prompts, wanted, requests):
        made = min(count, 64 - len(prompt) + 1)  # the context's end (64) ends a row that fills it
        assert events[-1] == ("done", "length", made)
        alone = generate(model, np.array([prompt]), made, 64, temperature=0.0)[0, len(prompt):]
        assert text_of(events) == TOKENIZER.decode(alone.tolist())


def test_next_token_ids_is_one_step_of_generate():
    from minigpt.generate import next_token_ids

    logits = np.array([[0.0, 3.0, 1.0], [2.0, 0.0, 2.0]], np.float32)
    assert next_token_ids(logits).tolist() == [1, 0]  # greedy: argmax, the lowest id of a tie
    assert next_token_ids(logits, 1.0, top_k=1, rng=np.random.default_rng(0)).tolist() == [1, 0]
    with pytest.raises(ValueError, match="rng"):
        next_token_ids(logits, temperature=1.0)
    with pytest.raises(ValueError, match="shape"):
        next_token_ids(logits[0])
    with pytest.raises(FloatingPointError, match="not finite"):
        next_token_ids(np.array([[np.nan, 1.0, 0.0]]))


def test_each_row_keeps_its_own_sampling_settings_seed_and_stop():
    model = tiny_model(seed=2)
    engine = BatchEngine(model, TOKENIZER, eos_id=None)
    prompt = TOKENIZER.encode("Every effort moves you")
    sampled_alone, events_alone = collect(prompt, 10, temperature=1.5, top_k=40, seed=7)
    engine.run_together([sampled_alone])
    sampled, events = collect(prompt, 10, temperature=1.5, top_k=40, seed=7)
    greedy, greedy_events = collect(TOKENIZER.encode("Hello there"), 5, temperature=0.0)
    engine.run_together([greedy, sampled])
    assert text_of(events) == text_of(events_alone)  # the same seed draws the same tokens beside another row
    assert greedy_events[-1] == ("done", "length", 5)  # its own max_tokens, not the batch's
    # A stop string cuts the text before it and ends the row.
    whole = text_of(events)
    stop = whole[len(whole) // 2:len(whole) // 2 + 2]
    cut, cut_events = collect(prompt, 10, temperature=1.5, top_k=40, seed=7, stop=[stop])
    engine.run_together([cut])
    assert text_of(cut_events) == whole[:whole.find(stop)] and cut_events[-1][1] == "stop"


def test_the_end_of_text_token_ends_a_row_and_the_context_end_ends_the_batch():
    eos = TOKENIZER.eot_token
    engine = BatchEngine(always_says(eos), TOKENIZER, eos_id=eos)
    request, events = collect(TOKENIZER.encode("Hi"), 20, temperature=0.0)
    engine.run_together([request])
    assert events == [("done", "stop", 0)]
    engine = BatchEngine(always_says(TOKENIZER.encode(" a")[0]), TOKENIZER, eos_id=eos)
    request, events = collect(TOKENIZER.encode("one two three"), 500, temperature=0.0)
    engine.run_together([request])
    assert events[-1] == ("done", "length", 64 - 3 + 1)  # context 64: the last token is predicted, never fed


class FailsOnce:
    """A model whose first prefill of more than one row raises, as an unexpected bug would."""

    def __init__(self, model):
        self._model, self.failed = model, False

    def __call__(self, ids, **options):
        if ids.shape[0] > 1 and ids.shape[1] > 1 and not self.failed:
            self.failed = True
            raise RuntimeError("boom")
        return self._model(ids, **options)

    def __getattr__(self, name):
        return getattr(self._model, name)


def test_a_failing_batch_ends_its_requests_with_errors_and_the_engine_goes_on():
    engine = BatchEngine(FailsOnce(tiny_model(seed=7)), TOKENIZER, batch_window=0.05)
    engine.start()
    try:
        requests = [collect(TOKENIZER.encode(text), 5, temperature=0.0) for text in ("Hello", "Good morning")]
        for request, _ in requests:
            engine.submit(request)
        wait = time.monotonic() + 10
        while not all(events for _, events in requests) and time.monotonic() < wait:
            time.sleep(0.01)
        assert [events for _, events in requests] == [[("error", "generation failed: RuntimeError: boom")]] * 2
        later, events = collect(TOKENIZER.encode("Hello"), 3, temperature=0.0)
        engine.submit(later)
        while not (events and events[-1][0] == "done") and time.monotonic() < wait:
            time.sleep(0.01)
        assert events[-1] == ("done", "length", 3)
    finally:
        engine.stop()


# --------------------------------------------------------------------------------------------
# The HTTP API on a tiny base model
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def base_server():
    app = create_app(served(tiny_model(seed=3)), max_tokens=40, max_body_bytes=4000, batch_window=0.05)
    with running(app) as url:
        yield url, app


def post(url, path, body, **options):
    return httpx.post(url + path, content=body if isinstance(body, (bytes, str)) else json.dumps(body), timeout=30, **options)


def sse_events(response_text):
    assert response_text.endswith("data: [DONE]\n\n")
    return [json.loads(line[6:]) for line in response_text.split("\n") if line.startswith("data: ") and line != "data: [DONE]"]


def test_models_page_and_health(base_server):
    url, _ = base_server
    card = httpx.get(url + "/v1/models").json()["data"][0]
    assert card["id"] == "tiny" and card["object"] == "model"
    assert card["minigpt"]["kind"] == "base" and card["minigpt"]["context_length"] == 64 and card["minigpt"]["max_tokens"] == 40
    page = httpx.get(url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html") and 'id="prompt"' in page.text
    script, style = httpx.get(url + "/static/app.js").text, httpx.get(url + "/static/style.css").text
    assert "getReader" in script and "@media" in style
    assert all("://" not in text for text in (page.text, script, style))  # nothing from the network: works offline
    assert httpx.get(url + "/static/secret.py").status_code == 404
    assert httpx.get(url + "/health").json() == {"status": "ok"}


def test_completions_whole_and_streamed_agree(base_server):
    url, _ = base_server
    body = {"model": "tiny", "prompt": "Every effort moves you", "max_tokens": 8, "temperature": 0}
    whole = post(url, "/v1/completions", body).json()
    assert whole["object"] == "text_completion" and whole["choices"][0]["finish_reason"] == "length"
    assert whole["usage"] == {"prompt_tokens": 4, "completion_tokens": 8, "total_tokens": 12}
    expected = generate(tiny_model(seed=3), np.array([TOKENIZER.encode(body["prompt"])]), 8, 64)[0, 4:]
    assert whole["choices"][0]["text"] == TOKENIZER.decode(expected.tolist())
    streamed = post(url, "/v1/completions", {**body, "stream": True})
    assert streamed.headers["content-type"].startswith("text/event-stream")
    chunks = sse_events(streamed.text)
    assert "".join(chunk["choices"][0]["text"] for chunk in chunks) == whole["choices"][0]["text"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length" and len(chunks) == 9  # 8 tokens, then the end


def test_chat_streamed_with_usage_and_seeded_sampling(base_server):
    url, _ = base_server
    body = {"model": "tiny", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
            "max_tokens": 6, "temperature": 1.2, "top_p": 0.9, "seed": 5}
    first = post(url, "/v1/chat/completions", body).json()
    assert first["object"] == "chat.completion" and first["choices"][0]["message"]["role"] == "assistant"
    assert post(url, "/v1/chat/completions", body).json()["choices"][0]["message"] == first["choices"][0]["message"]
    chunks = sse_events(post(url, "/v1/chat/completions", {**body, "stream": True, "stream_options": {"include_usage": True}}).text)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == first["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 6


@pytest.mark.parametrize("path, body, status, param, words", [
    ("/v1/completions", b"{not json", 400, None, "not valid JSON"),
    ("/v1/completions", b"[1, 2]", 400, None, "must be a JSON object"),
    ("/v1/completions", {"prompt": "Hi"}, 400, "model", "'model' must be the model's id"),
    ("/v1/completions", {"model": "gpt-4", "prompt": "Hi"}, 404, "model", "does not exist: this server serves 'tiny'"),
    ("/v1/completions", {"model": "tiny", "prompt": 42}, 400, "prompt", "'prompt' must be one non-empty string"),
    ("/v1/completions", {"model": "tiny", "prompt": "Hi", "max_tokens": "10"}, 400, "max_tokens", "must be an integer, got str"),
    ("/v1/completions", {"model": "tiny", "prompt": "Hi", "max_tokens": 41}, 400, "max_tokens", "more than this server's limit of 40"),
    ("/v1/completions", {"model": "tiny", "prompt": "Hi", "temperature": 3}, 400, "temperature", "between 0 and 2"),
    ("/v1/completions", {"model": "tiny", "prompt": "Hi", "n": 2}, 400, "n", "'n' must be 1"),
    ("/v1/completions", {"model": "tiny", "prompt": "Hi", "stop": ["a", "b", "c", "d", "e"]}, 400, "stop", "up to 4"),
    ("/v1/completions", {"model": "tiny", "prompt": "Hi", "seed": 2**64}, 400, "seed", "between -9223372036854775808 and"),
    ("/v1/completions", {"model": "tiny", "prompt": "Hi", "stream": "yes"}, 400, "stream", "true or false"),
    ("/v1/completions", {"model": "tiny", "prompt": "word " * 70}, 400, "prompt", "context is 64 tokens"),
    ("/v1/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": "word " * 70}]}, 400, "messages",
     "context is 64 tokens"),
    ("/v1/chat/completions", {"model": "tiny", "messages": "Hi"}, 400, "messages", "non-empty list"),
    ("/v1/chat/completions", {"model": "tiny", "messages": [{"role": "king", "content": "Hi"}]}, 400, "messages[0]", "'role' in"),
    ("/v1/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": 5}]}, 400, "messages[0]", "must be a string"),
    ("/v1/classify", {"model": "tiny", "input": "Hi"}, 400, "model", "not a classifier"),
    ("/v1/completions", "x" * 5000, 413, None, "larger than this server's limit of 4,000 bytes"),
])
def test_bad_requests_get_openai_errors(base_server, path, body, status, param, words):
    url, _ = base_server
    response = post(url, path, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["param"] == param
    assert words in error["message"] and "Traceback" not in response.text


def test_unknown_paths_and_methods(base_server):
    url, _ = base_server
    assert httpx.get(url + "/v1/nothing").json()["error"]["message"] == "no such path: GET /v1/nothing"
    response = httpx.get(url + "/v1/completions")
    assert response.status_code == 405 and "not allowed" in response.json()["error"]["message"]


def test_requests_sent_together_share_a_batch_and_get_their_own_answers(base_server):
    url, app = base_server
    prompts = ["Every effort moves you", "Hi", "The sun", "A long time ago in a land", "Yes", "One two three"]
    alone = {prompt: post(url, "/v1/completions", {"model": "tiny", "prompt": prompt, "max_tokens": 6, "temperature": 0}).json()
             for prompt in prompts}
    before = app.state.engine.admissions
    results, barrier = {}, threading.Barrier(len(prompts))

    def ask(prompt):
        barrier.wait()
        results[prompt] = post(url, "/v1/completions", {"model": "tiny", "prompt": prompt, "max_tokens": 6, "temperature": 0}).json()

    threads = [threading.Thread(target=ask, args=(prompt,)) for prompt in prompts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert app.state.engine.largest_batch > 1 and app.state.engine.admissions - before < len(prompts)
    for prompt in prompts:
        assert results[prompt]["choices"][0]["text"] == alone[prompt]["choices"][0]["text"]


# --------------------------------------------------------------------------------------------
# A client that goes away, a model that gives NaN, an API key, a classifier
# --------------------------------------------------------------------------------------------

def test_a_client_that_disconnects_stops_its_generation():
    model = SlowModel(tiny_model(seed=4, context_length=256), delay=0.01)
    app = create_app(served(model), max_tokens=200, batch_window=0)
    with running(app) as url:
        body = {"model": "tiny", "prompt": "Every effort", "max_tokens": 200, "temperature": 0, "stream": True}
        with httpx.stream("POST", url + "/v1/completions", json=body, timeout=30) as response:
            lines = response.iter_lines()
            next(line for line in lines if '"text"' in line)
        time.sleep(0.5)
        calls = model.calls
        time.sleep(0.3)
        assert model.calls == calls < 100  # stopped well before its 200 tokens
        assert post(url, "/v1/completions", {"model": "tiny", "prompt": "Hi", "max_tokens": 2}).status_code == 200


def test_nan_logits_end_that_request_with_an_error_and_the_server_goes_on():
    model = tiny_model(seed=5)
    poison = TOKENIZER.encode(" poison")[0]
    model.tok_emb.weight.data[poison] = np.nan  # only prompts holding this token give NaN
    app = create_app(served(model), max_tokens=10, batch_window=0.1)
    with running(app) as url:
        results = {}

        def ask(prompt, stream):
            results[prompt, stream] = post(url, "/v1/completions", {"model": "tiny", "prompt": prompt, "max_tokens": 5, "stream": stream})

        threads = [threading.Thread(target=ask, args=args) for args in
                   [("a poison apple", False), ("a good apple", False), ("more poison", True)]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        bad = results["a poison apple", False]
        assert bad.status_code == 500 and "not finite" in bad.json()["error"]["message"]
        assert bad.json()["error"]["type"] == "server_error"
        streamed = sse_events(results["more poison", True].text)
        assert "not finite" in streamed[-1]["error"]["message"]
        assert results["a good apple", False].json()["usage"]["completion_tokens"] == 5
        assert post(url, "/v1/completions", {"model": "tiny", "prompt": "again", "max_tokens": 3}).status_code == 200


def test_the_api_key_is_checked_on_every_api_request_but_not_on_the_page():
    app = create_app(served(tiny_model()), api_key="s3cret", max_tokens=4)
    with running(app) as url:
        body = {"model": "tiny", "prompt": "Hi"}
        assert httpx.get(url + "/").status_code == 200
        for headers, words in (({}, "no API key"), ({"Authorization": "Bearer wrong"}, "wrong"),
                               ({"Authorization": "Basic s3cret"}, "wrong")):
            for response in (httpx.get(url + "/v1/models", headers=headers), post(url, "/v1/completions", body, headers=headers)):
                assert response.status_code == 401 and words in response.json()["error"]["message"]
                assert response.json()["error"]["code"] == "invalid_api_key"
        good = {"Authorization": "Bearer s3cret"}
        assert httpx.get(url + "/v1/models", headers=good).status_code == 200
        assert post(url, "/v1/completions", body, headers=good).status_code == 200


def test_a_classifier_labels_texts_and_generates_none(tmp_path):
    model = load_served_model(save_classifier(tmp_path / "spam"))
    assert model.kind == "classifier" and model.name == "spam"
    with running(create_app(model)) as url:
        response = post(url, "/v1/classify", {"model": "spam", "input": ["You won a prize!", "See you at lunch"]}).json()
        assert [set(row["probabilities"]) for row in response["data"]] == [{"ham", "spam"}] * 2
        for row in response["data"]:
            assert abs(sum(row["probabilities"].values()) - 1) < 1e-5
            assert row["label"] == max(row["probabilities"], key=row["probabilities"].get)
        refused = post(url, "/v1/chat/completions", {"model": "spam", "messages": [{"role": "user", "content": "Hi"}]})
        assert refused.status_code == 400 and "POST /v1/classify" in refused.json()["error"]["message"]
        assert post(url, "/v1/classify", {"model": "spam", "input": ""}).status_code == 400


def test_a_hugging_face_folder_and_gpt2_by_name(tmp_path, monkeypatch):
    from support.fake_hub import FakeHub

    folder = ROOT / "tests" / "fixtures" / "gpt2-tiny"  # 2 layers, a vocabulary of 512 ids, 32 positions
    served_folder = load_served_model(model=str(folder))
    assert (served_folder.kind, served_folder.name, served_folder.context_length) == ("base", "gpt2-tiny", 32)
    with running(create_app(served_folder, max_tokens=5)) as url:
        small_ids = TOKENIZER.decode([40, 300, 257])  # ids inside the 512
        answer = post(url, "/v1/completions", {"model": "gpt2-tiny", "prompt": small_ids, "temperature": 0}).json()
        assert answer["usage"]["prompt_tokens"] == 3 and answer["usage"]["completion_tokens"] == 5
        outside = post(url, "/v1/completions", {"model": "gpt2-tiny", "prompt": " hello"})
        assert outside.status_code == 400 and "outside this model's vocabulary of 512 ids" in outside.json()["error"]["message"]
    files = {"openai-community/gpt2": {name: (folder / name).read_bytes() for name in ("config.json", "model.safetensors")}}
    with FakeHub(files) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("MINIGPT_HOME", str(tmp_path / "cache"))
        by_name = load_served_model(model="gpt2-small")
    assert (by_name.kind, by_name.name, by_name.model.cfg.vocab_size) == ("base", "gpt2-small", 512)


# --------------------------------------------------------------------------------------------
# Clients people use: the openai package, and minigpt evaluate's judge
# --------------------------------------------------------------------------------------------

def test_the_official_openai_client_works_unchanged(base_server):
    openai = pytest.importorskip("openai")
    url, _ = base_server
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    assert [model.id for model in client.models.list()] == ["tiny"]
    chat = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hello"}], max_tokens=5,
                                          temperature=0, seed=1)
    assert chat.choices[0].finish_reason == "length" and chat.usage.completion_tokens == 5
    pieces = [chunk.choices[0].delta.content or "" for chunk in
              client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hello"}], max_tokens=5,
                                             temperature=0, stream=True) if chunk.choices]
    assert "".join(pieces) == chat.choices[0].message.content
    completion = client.completions.create(model="tiny", prompt="Every effort moves you", max_tokens=3, temperature=0, stop=["\n"])
    assert completion.usage.prompt_tokens == 4
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.completions.create(model="gpt-4", prompt="Hi")
    with pytest.raises(openai.BadRequestError, match="'n' must be 1"):
        client.completions.create(model="tiny", prompt="Hi", n=3)


def test_minigpt_evaluate_uses_a_minigpt_server_as_its_judge(tmp_path, capsys):
    judge = always_says(TOKENIZER.encode("85")[0], context_length=256)  # the book's judge prompt: ~150 tokens  # an instruction-tuned "judge" that always answers 85
    entries = [{"instruction": "Name a color.", "input": "", "output": "Blue.", "model_response": "Red."},
               {"instruction": "Add 2 and 2.", "input": "", "output": "4", "model_response": "4"}]
    path = tmp_path / "responses.json"
    path.write_text(json.dumps(entries))
    app = create_app(load_served_model(save_run(tmp_path / "judge", judge, task="instruct")), max_tokens=1)
    with running(app) as url:
        assert main(["evaluate", str(path), "--judge-url", url + "/v1/chat/completions", "--judge-model", "judge"]) == 0
    out = capsys.readouterr().out
    assert "(OpenAI-compatible API)" in out and "Number of scores: 2 of 2\nAverage score: 85.00" in out


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------

def test_serve_without_the_extra_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn -> ImportError
    with pytest.raises(SystemExit, match=r'pip install "minigpt\[serve\]"'):
        main(["serve", "--checkpoint", save_run(tmp_path / "run", tiny_model())])


def test_serve_flag_errors(tmp_path):
    with pytest.raises(SystemExit, match="--max-tokens must be >= 1"):
        main(["serve", "--checkpoint", str(tmp_path), "--max-tokens", "0"])
    with pytest.raises(SystemExit, match="--checkpoint: .*no checkpoint there"):
        main(["serve", "--checkpoint", str(tmp_path)])


def test_sigterm_lets_the_answer_in_flight_finish_then_exits(tmp_path):
    run = save_run(tmp_path / "run", tiny_model(seed=6, context_length=1024, emb_dim=64, n_layers=2))
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([sys.executable, "-m", "minigpt", "serve", "--checkpoint", run, "--port", "0",
                               "--max-tokens", "1000", "--threads", "1"],
                              stderr=subprocess.PIPE, text=True, env=environment)
    try:
        opened = next(line for line in server.stderr if line.startswith("open ") or server.poll() is not None)
        url = opened.split()[1].rstrip("/")  # --port 0: the line names the port the system chose, not 0
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0"), opened
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline and server.poll() is None, "the server did not start"
                time.sleep(0.1)
        body = {"model": "run", "prompt": "Every effort moves you", "max_tokens": 1000, "temperature": 0, "stream": True}
        with httpx.stream("POST", url + "/v1/completions", json=body, timeout=60) as response:
            lines = response.iter_lines()
            next(line for line in lines if '"text"' in line)
            server.send_signal(signal.SIGTERM)
            rest = [line for line in lines if line]
        assert sum('"text"' in line for line in rest) > 100  # the signal came early: most of the answer came after it
        assert rest[-1] == "data: [DONE]"
        assert '"finish_reason": "length"' in rest[-2]  # all 1000 tokens (the context's end), not cut short
        assert server.wait(30) == 128 + signal.SIGTERM
        assert "minigpt serve: stopped;" in server.stderr.read()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
