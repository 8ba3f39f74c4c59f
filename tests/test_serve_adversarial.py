"""`minigpt serve` as an adversarial new user found it: each test is a defect that was fixed.

Bodies the parser chokes on, fields OpenAI's API accepts (null `n`, negative seeds, `top_p` 0),
the openai client's `models.retrieve`, the request field an error names, a classifier's cropped
texts, the shutdown timeout ending responses in order, and the command's own port and key checks.
"""

import json
import threading
import time

import httpx
import pytest

from support.serve_support import SlowModel, running, save_classifier, save_run, tiny_model
from minigpt.cli import main
from minigpt.serve import BatchEngine, GenerationRequest, ServedModel, load_served_model
from minigpt.serve.app import create_app
from minigpt.tokenizer import get_encoding

TOKENIZER = get_encoding("gpt2")


def served(model, name="tiny"):
    return ServedModel(model, TOKENIZER, "base", name, "test", TOKENIZER.eot_token)


def post(url, path, body):
    return httpx.post(url + path, content=body if isinstance(body, (bytes, str)) else json.dumps(body), timeout=30)


@pytest.fixture(scope="module")
def server():
    with running(create_app(served(tiny_model(seed=3)), max_tokens=40, batch_window=0.02)) as url:
        yield url


def completion(url, **fields):
    response = post(url, "/v1/completions", {"model": "tiny", "prompt": "Every effort moves you", **fields})
    assert response.status_code == 200, response.text
    return response.json()


def test_a_deeply_nested_body_is_a_400_not_a_500(server):
    response = post(server, "/v1/completions", "[" * 100_000 + "]" * 100_000)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"
    assert "nested too deeply" in response.json()["error"]["message"]


def test_chat_logprobs_are_refused_as_on_completions(server):
    body = {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "logprobs": True}
    response = post(server, "/v1/chat/completions", body)
    assert response.status_code == 400 and response.json()["error"]["param"] == "logprobs"
    assert post(server, "/v1/chat/completions", {**body, "logprobs": False, "max_tokens": 1}).status_code == 200


def test_an_empty_chat_message_names_messages_not_prompt(server):
    response = post(server, "/v1/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": ""}]})
    assert response.status_code == 400 and response.json()["error"]["param"] == "messages"


def test_fields_openai_accepts_are_accepted(server):
    assert completion(server, n=None, max_tokens=2)["usage"]["completion_tokens"] == 2  # null: the default, 1
    assert completion(server, max_completion_tokens=None, max_tokens=3)["usage"]["completion_tokens"] == 3
    seeded = completion(server, seed=-7, max_tokens=6, temperature=1.5)["choices"][0]["text"]
    assert completion(server, seed=-7, max_tokens=6, temperature=1.5)["choices"][0]["text"] == seeded  # any int64 seed
    greedy = completion(server, temperature=0, max_tokens=6)["choices"][0]["text"]
    assert completion(server, top_p=0, temperature=1.5, seed=1, max_tokens=6)["choices"][0]["text"] == greedy
    zero = post(server, "/v1/completions", {"model": "tiny", "prompt": "Hi", "max_tokens": 0}).json()["error"]
    assert zero["message"] == "'max_tokens' must be at least 1, got 0"  # not "between 1 and 9223372036854775808"


def test_the_openai_client_retrieves_the_model(server):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0)
    model = client.models.retrieve("tiny")
    assert model.id == "tiny" and model.object == "model"
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.models.retrieve("gpt-4")
    assert httpx.get(server + "/v1/models/").json()["data"][0]["id"] == "tiny"  # a trailing slash: still the list


def test_a_classifier_says_which_texts_it_cropped_and_checks_the_model_type(tmp_path):
    with running(create_app(load_served_model(save_classifier(tmp_path / "spam")))) as url:
        rows = post(url, "/v1/classify", {"input": ["Hi there", "word " * 100]}).json()["data"]
        assert [(row["tokens"], row["truncated"]) for row in rows] == [(2, False), (64, True)]  # the context: 64
        wrong = post(url, "/v1/classify", {"model": 5, "input": "Hi"})
        assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "model"


def test_drain_ends_what_is_still_generating_with_a_shutdown_event():
    engine = BatchEngine(SlowModel(tiny_model(seed=1, context_length=512), delay=0.01), TOKENIZER, max_batch_size=1,
                         batch_window=0)
    running_events, waiting_events = [], []
    engine.start()
    try:
        engine.submit(GenerationRequest(TOKENIZER.encode("Every effort"), 400, running_events.append, temperature=0))
        engine.submit(GenerationRequest(TOKENIZER.encode("Hi"), 400, waiting_events.append, temperature=0))  # no room
        time.sleep(0.1)
        engine.drain(0.1)
        engine.drain(60)  # uvicorn's shutdown after a quick second Ctrl-C: the nearer deadline holds
        deadline = time.monotonic() + 2
        while not (running_events and running_events[-1][0] == "shutdown" and waiting_events) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert running_events[-1][0] == "shutdown" and "cut short" in running_events[-1][1]
        assert waiting_events == [("shutdown", waiting_events[0][1])]
    finally:
        engine.stop()


@pytest.mark.parametrize("how", ["timeout", "second signal"])
def test_a_shutdown_ends_every_response_in_order(how):
    """uvicorn cancels what is left at --shutdown-timeout, or at a second Ctrl-C: without the
    engine's drain, streams were cut without [DONE], a whole answer got a plain-text 500, and the
    log a traceback per request."""
    import signal

    import uvicorn

    from minigpt.cli import serve as serve_command

    app = create_app(served(SlowModel(tiny_model(seed=2, context_length=512), delay=0.01)), max_tokens=400, batch_window=0)
    timeout = 0.5 if how == "timeout" else 60
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", timeout_graceful_shutdown=timeout)
    server = serve_command._draining_server(uvicorn, config, app.state.engine)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    body = {"model": "tiny", "prompt": "Every effort", "max_tokens": 400, "temperature": 0}
    results = {}
    whole = threading.Thread(target=lambda: results.setdefault("whole", post(url, "/v1/completions", body)))
    whole.start()
    started = time.monotonic()
    with httpx.stream("POST", url + "/v1/completions", json={**body, "stream": True}, timeout=30) as response:
        lines = response.iter_lines()
        next(line for line in lines if '"text"' in line)
        server.handle_exit(signal.SIGINT, None)  # what Ctrl-C calls
        if how == "second signal":
            server.handle_exit(signal.SIGINT, None)
        rest = [line for line in lines if line]
    whole.join(10)
    thread.join(10)
    assert not thread.is_alive() and time.monotonic() - started < 4  # 400 tokens take 4 s or more
    assert rest[-1] == "data: [DONE]" and json.loads(rest[-2][6:])["error"]["code"] == "shutting_down"
    assert results["whole"].status_code == 503 and results["whole"].json()["error"]["code"] == "shutting_down"


def test_the_command_names_a_port_it_cannot_take_and_refuses_odd_keys(tmp_path, monkeypatch):
    import socket

    run = save_run(tmp_path / "run", tiny_model())
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SystemExit, match=f"cannot listen on 127.0.0.1:{port}: Address already in use"):
            main(["serve", "--checkpoint", run, "--port", str(port)])
    with pytest.raises(SystemExit, match="--api-key must be printable ASCII"):
        main(["serve", "--checkpoint", run, "--api-key", "clé"])
    monkeypatch.setenv("MINIGPT_API_KEY", "")  # set but empty: no key, not "--api-key is empty"
    from minigpt.cli import serve as serve_command
    import argparse

    parser = argparse.ArgumentParser()
    serve_command.add_parser(parser.add_subparsers())
    assert parser.parse_args(["serve", "--checkpoint", run]).api_key is None


def test_a_character_outside_a_char_models_alphabet_is_named_plainly():
    from minigpt.char_tokenizer import CharTokenizer

    model = ServedModel(tiny_model(seed=1, vocab_size=6), CharTokenizer("abc de"), "base", "char", "test", None)
    with running(create_app(model, max_tokens=3)) as url:
        assert post(url, "/v1/completions", {"model": "char", "prompt": "bad cab"}).json()["usage"]["completion_tokens"] == 3
        error = post(url, "/v1/completions", {"model": "char", "prompt": "héllo"}).json()["error"]
        assert error["message"] == "the prompt cannot be tokenised: character 'h' is not in this tokenizer's alphabet of 6 characters"


def test_a_tiny_temperature_samples_the_top_token_not_token_0():
    """"temperature": 1e-320 is in range: logits / T overflowed to inf, inf - inf gave NaN
    probabilities and the sampler silently picked token 0 ("!!!!!" from the quickstart model)."""
    import warnings

    import numpy as np

    from minigpt.generate import next_token_ids

    logits = np.array([[0.0, 3.0, 1.0], [2.0, 0.0, 2.0]], np.float32)
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warnings in the server's log either
        for temperature in (1e-320, 5e-324):
            for top_k in (None, 2):
                chosen = [next_token_ids(logits, temperature, top_k, rng=rng).tolist() for _ in range(20)]
                assert {row[0] for row in chosen} == {1} and {row[1] for row in chosen} == {0, 2}  # a tie: either
