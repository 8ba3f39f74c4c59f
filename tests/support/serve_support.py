"""Helpers of the `minigpt serve` tests: tiny checkpoints of the three kinds, a slow model, and a
uvicorn server running in a thread of the test process on a free port."""

from __future__ import annotations

import contextlib
import threading
import time

import numpy as np

from minigpt.checkpoint import CHECKPOINT_NAME, save_checkpoint
from minigpt.model import GPTModel

# GPT-2's vocabulary (so the real tokenizer works), everything else as small as it gets.
TINY = dict(vocab_size=50257, context_length=64, emb_dim=16, n_heads=2, n_layers=1, drop_rate=0.0, qkv_bias=False)


def tiny_model(seed: int = 0, **overrides) -> GPTModel:
    model = GPTModel({**TINY, **overrides}, rng=seed)
    model.eval()
    return model


def save_run(directory, model, task: str | None = None) -> str:
    """A run directory as `minigpt train` (task None) or `minigpt finetune instruct` (task "instruct") writes it."""
    directory.mkdir(parents=True, exist_ok=True)
    run_info = {"model_config": model.cfg.to_dict(), "tokenizer": {"name": "gpt2"}}
    if task:
        run_info["task"] = task
    save_checkpoint(str(directory / CHECKPOINT_NAME), model.state_dict(), None, {"trainer": {"run_info": run_info}})
    return str(directory)


def save_classifier(directory, seed: int = 0, labels=("ham", "spam")) -> str:
    """A run directory as `minigpt finetune classify` writes it (random weights)."""
    from minigpt.finetune.classification import replace_output_head

    directory.mkdir(parents=True, exist_ok=True)
    model = tiny_model(seed)
    replace_output_head(model, len(labels), rng=seed)
    settings = {"label_names": list(labels), "pooling": "last_non_padding", "max_length": None, "pad_token_id": 50256,
                "num_classes": len(labels), "tokenizer": {"name": "gpt2"}, "model_config": model.cfg.to_dict()}
    save_checkpoint(str(directory / CHECKPOINT_NAME), model.state_dict(), None, {"classifier": settings})
    return str(directory)


def always_says(token_id: int, seed: int = 0, **overrides) -> GPTModel:
    """A model whose greedy choice is `token_id` at every position: the final norm outputs ones
    (scale 0, shift 1), and that token's row of the (untied) head is ones too, so its logit (16)
    is far above the others (about N(0, 0.08^2))."""
    model = tiny_model(seed, **overrides)
    model.final_norm.scale.data[...] = 0
    model.final_norm.shift.data[...] = 1
    model.out_head.weight.data[token_id] = 1
    return model


class SlowModel:
    """A model that takes at least `delay` seconds per forward pass (to catch a stream mid-way)."""

    def __init__(self, model, delay: float):
        self._model, self._delay = model, delay
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        time.sleep(self._delay)
        return self._model(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._model, name)


@contextlib.contextmanager
def running(app):
    """Serve a Starlette app with uvicorn in a thread; yields the base URL "http://127.0.0.1:PORT"."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def as_array(ids) -> np.ndarray:
    return np.asarray(ids, np.int64)
