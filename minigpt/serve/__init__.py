"""`minigpt serve`: a chat page and an OpenAI-compatible HTTP API over a minigpt model (the book's
user-interface bonus of chapters 5-7, with the API that other tools speak).

Files, one idea each:

- models.py: which model is served (a checkpoint or GPT-2) and its kind: base, instruct, classifier;
- engine.py: the batching engine: requests that arrive together generated as one KV-cache batch;
- openai_api.py: the API's request checks, response objects and OpenAI-shaped errors;
- app.py: the Starlette application: the page, /v1/models, /v1/chat/completions, /v1/completions,
  /v1/classify;
- static/: the page (plain HTML, CSS and JavaScript; nothing from the network).

Needs the optional extra `serve` (Starlette and uvicorn): `pip install "minigpt[serve]"`. The
engine and the model loader import no web code. See docs/serve.md.
"""

from minigpt.serve.engine import BatchEngine, GenerationRequest
from minigpt.serve.models import ServedModel, chat_prompt, load_served_model

__all__ = ["BatchEngine", "GenerationRequest", "ServedModel", "chat_prompt", "load_served_model", "create_app"]


def __getattr__(name):
    if name == "create_app":  # the web stack is imported only when the app is made
        from minigpt.serve.app import create_app

        return create_app
    raise AttributeError(f"module 'minigpt.serve' has no attribute {name!r}")
