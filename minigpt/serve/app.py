"""The web application: the page at `/` and the OpenAI-style API under `/v1`, on Starlette.

    GET  /                      the chat page (minigpt/serve/static/index.html, app.js, style.css)
    GET  /health                {"status": "ok"}: the page polls it to notice a server that is gone
    GET  /v1/models             the served model, with its kind and size under "minigpt"
    GET  /v1/models/{model}     that model alone (404 for another)
    POST /v1/chat/completions   chat (streamed with "stream": true: server-sent events, then data: [DONE])
    POST /v1/completions        plain completion of a prompt (streamed or not)
    POST /v1/classify           {"input": text or [texts]} -> label and probabilities (classifier checkpoints)

Generation goes through one `BatchEngine` (minigpt/serve/engine.py): requests that arrive together
share a batch. Every /v1 request is checked against `api_key` when one is set
("Authorization: Bearer KEY"). Bodies above `max_body_bytes` get 413; every error is OpenAI's JSON
shape (minigpt/serve/openai_api.py), and an unexpected failure is a 500 with a one-line message
(its traceback goes to the server's log, not to the client).

References: Starlette's documentation (applications, routing, StreamingResponse, exception
handlers); the HTML Living Standard, "Server-sent events" (the `data:` lines); OpenAI API reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from importlib import resources

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from minigpt.serve.engine import BatchEngine, GenerationRequest
from minigpt.serve.models import ServedModel, chat_prompt
from minigpt.serve.openai_api import (ApiError, check_model, chunk_object, completion_object, error_body, new_id,
                                      parse_chat_request, parse_classify_request, parse_completion_request, usage)

STATIC_FILES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
                "style.css": "text/css; charset=utf-8"}
_NO_CACHE = {"Cache-Control": "no-store"}


def create_app(served: ServedModel, api_key: str | None = None, max_tokens: int = 512, max_body_bytes: int = 1_000_000,
               max_batch_size: int = 16, batch_window: float = 0.01) -> Starlette:
    """The Starlette application serving `served` (start it with uvicorn; see minigpt/cli/serve.py).

    Args:
        served: the model (load_served_model).
        api_key: None, or the key every /v1 request must send as "Authorization: Bearer KEY".
        max_tokens: the most new tokens a request may ask for (also the default when it asks none).
        max_body_bytes: the largest request body accepted, in bytes.
        max_batch_size, batch_window: the engine's batch size and gathering time (seconds).

    Returns:
        The app; `app.state.engine` is its BatchEngine (started and stopped with the app's lifespan).

    Raises:
        ValueError: max_tokens or max_body_bytes < 1.
    """
    if max_tokens < 1 or max_body_bytes < 1:
        raise ValueError(f"max_tokens and max_body_bytes must be >= 1, got {max_tokens} and {max_body_bytes}")
    engine = BatchEngine(served.model, served.tokenizer, served.eos_id, max_batch_size, batch_window)
    server = _Server(served, engine, api_key, max_tokens, max_body_bytes)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        engine.start()
        yield
        await run_in_threadpool(engine.stop)  # the batch in flight ends first (uvicorn waited for its responses)

    routes = [Route("/", server.page), Route("/static/{name}", server.static), Route("/health", server.health),
              Route("/v1/models", server.models), Route("/v1/models/{model:path}", server.model), Route("/v1/chat/completions", server.chat, methods=["POST"]),
              Route("/v1/completions", server.completions, methods=["POST"]),
              Route("/v1/classify", server.classify, methods=["POST"])]
    handlers = {ApiError: _api_error, HTTPException: _http_error, Exception: _server_error}
    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)
    app.state.engine, app.state.served = engine, served
    return app


async def _api_error(request, error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status)


async def _http_error(request, error: HTTPException) -> JSONResponse:
    message = {404: f"no such path: {request.method} {request.url.path}",
               405: f"method {request.method} is not allowed on {request.url.path}"}.get(error.status_code, str(error.detail))
    return JSONResponse(error_body(message, param=None, code=None), status_code=error.status_code)


async def _server_error(request, error: Exception) -> JSONResponse:
    return JSONResponse(error_body(f"internal error: {type(error).__name__} (see the server's log)", "server_error"),
                        status_code=500)


def _sse(data) -> str:
    """One server-sent event: "data: JSON" and a blank line."""
    return f"data: {json.dumps(data) if not isinstance(data, str) else data}\n\n"


class _Server:
    """The route handlers, sharing the model, the engine and the limits."""

    def __init__(self, served: ServedModel, engine: BatchEngine, api_key, max_tokens: int, max_body_bytes: int):
        self.served, self.engine, self.api_key = served, engine, api_key
        self.max_tokens, self.max_body_bytes = max_tokens, max_body_bytes
        self.classify_lock = asyncio.Lock()

    # ---- the page ------------------------------------------------------------------------
    async def page(self, request) -> Response:
        return await self.static(request, "index.html")

    async def static(self, request, name: str | None = None) -> Response:
        name = name or request.path_params["name"]
        if name not in STATIC_FILES:
            raise ApiError(404, f"no such file: /static/{name}")
        text = resources.files("minigpt.serve").joinpath("static", name).read_text(encoding="utf-8")
        return Response(text, media_type=STATIC_FILES[name], headers=_NO_CACHE)

    async def health(self, request) -> JSONResponse:
        return JSONResponse({"status": "ok"}, headers=_NO_CACHE)

    # ---- checks --------------------------------------------------------------------------
    def authorize(self, request) -> None:
        """Raise ApiError 401 unless the request carries the API key (when one is set)."""
        if self.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(key.strip().encode(), self.api_key.encode()):
            given = "no API key was given" if not header else "the API key is wrong"
            raise ApiError(401, f"{given}: send 'Authorization: Bearer KEY' with the key of `minigpt serve --api-key`",
                           code="invalid_api_key")

    async def read_json(self, request):
        """The request's JSON body, at most max_body_bytes; ApiError 413 or 400 otherwise."""
        self.authorize(request)
        length = request.headers.get("content-length", "")
        too_large = ApiError(413, f"the request body is larger than this server's limit of {self.max_body_bytes:,} bytes",
                             code="request_too_large")
        if length.isdigit() and int(length) > self.max_body_bytes:
            raise too_large
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > self.max_body_bytes:
                raise too_large
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError) as error:
            raise ApiError(400, f"the request body is not valid JSON: {error}", code="invalid_json") from None
        except RecursionError:  # [[[[...]]]] nested deeper than Python's parser goes
            raise ApiError(400, "the request body is not valid JSON: nested too deeply", code="invalid_json") from None

    def prompt_ids(self, text: str, param: str = "prompt") -> list:
        """The prompt's token ids; ApiError 400 (naming `param`, the request field the prompt came
        from: "prompt" or "messages") when it is empty or does not fit the context."""
        tokenizer = self.served.tokenizer
        try:
            ids = (tokenizer.encode_ordinary if hasattr(tokenizer, "encode_ordinary") else tokenizer.encode)(text)
        except (KeyError, ValueError) as error:  # a character outside a char tokenizer's alphabet
            detail = error.args[0] if isinstance(error, KeyError) and error.args else error  # str(KeyError) adds quotes
            raise ApiError(400, f"the prompt cannot be tokenised: {detail}", param) from None
        context, vocab_size = self.served.context_length, self.served.model.cfg.vocab_size
        if ids and max(ids) >= vocab_size:  # a checkpoint with a smaller vocabulary than its tokenizer's
            raise ApiError(400, f"the prompt holds token id {max(ids)}, outside this model's vocabulary of {vocab_size} ids",
                           param, "token_outside_vocabulary")
        if not ids:
            raise ApiError(400, "the prompt is empty: give at least one character", param)
        if len(ids) >= context:
            raise ApiError(400, f"the prompt has {len(ids)} tokens, but this model's context is {context} tokens, and at least "
                           "one must be left for the answer; shorten the prompt", param, "context_length_exceeded")
        return list(ids)

    # ---- the API -------------------------------------------------------------------------
    def card(self) -> dict:
        """The served model as OpenAI's model object, with minigpt's details under "minigpt"."""
        served = self.served
        return {"id": served.name, "object": "model", "created": 0, "owned_by": "minigpt",
                "minigpt": {**served.describe(), "max_tokens": self.max_tokens}}

    async def models(self, request) -> JSONResponse:
        self.authorize(request)
        return JSONResponse({"object": "list", "data": [self.card()]})

    async def model(self, request) -> JSONResponse:
        """GET /v1/models/{model} (the openai client's `models.retrieve`): the card, or 404."""
        if not request.path_params["model"]:  # /v1/models/: the list, as /v1/models
            return await self.models(request)
        self.authorize(request)
        check_model({"model": request.path_params["model"]}, self.served.name)
        return JSONResponse(self.card())

    async def chat(self, request) -> Response:
        body = await self.read_json(request)
        messages, settings = parse_chat_request(body, self.served.name, self.max_tokens)
        self.refuse_classifier("chat/completions")
        prompt = chat_prompt(self.served, messages)
        return await self.generate(request, prompt, settings, chat=True)

    async def completions(self, request) -> Response:
        body = await self.read_json(request)
        prompt, settings = parse_completion_request(body, self.served.name, self.max_tokens)
        self.refuse_classifier("completions")
        return await self.generate(request, prompt, settings, chat=False)

    def refuse_classifier(self, path: str) -> None:
        if self.served.kind == "classifier":
            raise ApiError(400, f"{self.served.name!r} is a classifier (minigpt finetune classify): it labels texts and "
                           f"generates none; POST /v1/classify {{\"model\", \"input\"}} instead of /v1/{path}",
                           "model", "model_cannot_generate")

    async def classify(self, request) -> JSONResponse:
        body = await self.read_json(request)
        texts = parse_classify_request(body)
        if body.get("model") is not None:
            check_model(body, self.served.name)
        if self.served.kind != "classifier":
            raise ApiError(400, f"{self.served.name!r} is a {self.served.kind} model, not a classifier: it generates text "
                           "(/v1/chat/completions, /v1/completions)", "model", "model_cannot_classify")
        probabilities, lengths = await self._classify_texts(texts)
        labels = self.served.classifier["label_names"]
        limit = self._classify_max_length() or self.served.context_length
        # A text longer than the context is classified by its first `limit` tokens (as `minigpt
        # classify --truncate`), and says so: "truncated" and the tokens read.
        results = [{"label": labels[int(row.argmax())], "probabilities": {name: float(p) for name, p in zip(labels, row)},
                    "tokens": min(length, limit), "truncated": length > limit}
                   for row, length in zip(probabilities, lengths)]
        return JSONResponse({"object": "list", "model": self.served.name, "data": results})

    def _classify_max_length(self) -> int | None:
        """The classifier's padded length ("last" pooling reads position max_length - 1), else None."""
        settings = self.served.classifier
        return settings["max_length"] if settings["pooling"] == "last" else None  # as `minigpt classify`

    async def _classify_texts(self, texts):
        from minigpt.finetune.classification import classify_texts

        settings, tokenizer = self.served.classifier, self.served.tokenizer
        pooling, max_length = settings["pooling"], self._classify_max_length()

        def run():  # (probabilities (N, K), each text's length in tokens), off the event loop
            probabilities = classify_texts(texts, self.served.model, tokenizer, max_length, settings["pad_token_id"],
                                           pooling=pooling, truncation=True)
            return probabilities, [len(tokenizer.encode(text)) for text in texts]

        async with self.classify_lock:  # one forward pass at a time over the one model
            try:
                return await run_in_threadpool(run)
            except (KeyError, ValueError) as error:
                raise ApiError(400, f"cannot classify: {error}", "input") from None

    async def generate(self, request, prompt: str, settings: dict, chat: bool) -> Response:
        """Queue the request on the engine; answer with a stream of chunks or one object."""
        ids = self.prompt_ids(prompt, "messages" if chat else "prompt")
        loop, events = asyncio.get_running_loop(), asyncio.Queue()

        def emit(event) -> None:  # called from the engine's thread
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening any more
                loop.call_soon_threadsafe(events.put_nowait, event)

        job = GenerationRequest(ids, settings["max_tokens"], emit, settings["temperature"], settings["top_k"],
                                settings["top_p"], settings["stop"], settings["seed"],
                                strip_leading=chat and self.served.kind == "instruct")
        try:
            self.engine.submit(job)
        except RuntimeError as error:
            raise ApiError(503, str(error), code="shutting_down") from None
        response_id = new_id("chatcmpl" if chat else "cmpl")
        if settings["stream"]:
            stream = self._stream(job, events, response_id, chat, len(ids), settings["include_usage"])
            return StreamingResponse(stream, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        return await self._whole(request, job, events, response_id, chat, len(ids))

    async def _whole(self, request, job, events, response_id, chat, prompt_tokens) -> JSONResponse:
        pieces = []
        try:
            while True:
                try:
                    event = await asyncio.wait_for(events.get(), timeout=0.5)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():  # the client went away: stop generating
                        job.cancel()
                        return Response(status_code=499)
                    continue
                if event[0] == "text":
                    pieces.append(event[1])
                elif event[0] == "error":
                    raise ApiError(500, event[1], code="generation_failed")
                elif event[0] == "shutdown":
                    raise ApiError(503, event[1], code="shutting_down")
                else:
                    _, reason, tokens = event
                    return JSONResponse(completion_object(chat, response_id, self.served.name, "".join(pieces), reason,
                                                          usage(prompt_tokens, tokens)))
        finally:
            job.cancel()  # no-op once it is done

    async def _stream(self, job, events, response_id, chat, prompt_tokens, include_usage):
        name, started = self.served.name, time.perf_counter()
        try:
            if chat:
                yield _sse(chunk_object(True, response_id, name, "", None, first=True))
            while True:
                event = await events.get()
                if event[0] == "text":
                    yield _sse(chunk_object(chat, response_id, name, event[1], None))
                elif event[0] in ("error", "shutdown"):
                    code = "generation_failed" if event[0] == "error" else "shutting_down"
                    yield _sse(error_body(event[1], "server_error", code=code))
                    break
                else:
                    _, reason, tokens = event
                    yield _sse(chunk_object(chat, response_id, name, None, reason))
                    if include_usage:
                        final = {**chunk_object(chat, response_id, name, None, None), "choices": [],
                                 "usage": usage(prompt_tokens, tokens), "seconds": round(time.perf_counter() - started, 4)}
                        yield _sse(final)
                    break
            yield _sse("[DONE]")
        finally:
            job.cancel()  # the client went away (the stream was cancelled) or the answer is complete
