"""The OpenAI-style API's shapes: request checks, response bodies, stream chunks and errors.

Requests are checked here field by field, so that a wrong type or value gets an HTTP 400 whose
message names the field, what was expected and what came, in OpenAI's error shape:

    {"error": {"message": "...", "type": "invalid_request_error", "param": "max_tokens", "code": null}}

Fields the server uses: `model`, `messages` (chat) or `prompt` (completions), `max_tokens`
(`max_completion_tokens` too), `temperature` (0-2, default 1), `top_p`, `top_k` (an extension,
as vLLM's), `stop` (a string or up to 4), `seed`, `n` (1 only), `stream`, `stream_options.include_usage`.
Other fields are accepted and ignored, as OpenAI-compatible servers do.

References: OpenAI API reference, "Chat Completions" and "Completions" (request and response
objects, the streamed chunk objects, `data: [DONE]`), and "Error codes".
"""

from __future__ import annotations

import time
import uuid

MAX_STOP_SEQUENCES = 4  # as OpenAI's API
ROLES = ("system", "developer", "user", "assistant", "tool")


class ApiError(Exception):
    """An error answered in OpenAI's JSON shape with an HTTP status.

    Args:
        status: HTTP status (400 bad request, 401 no or wrong key, 404 unknown model or path,
            413 body too large, 500 generation failure).
        message: what went wrong and what is expected. param: the request field, or None.
        code: a short machine-readable code ("model_not_found", "context_length_exceeded", ...).
        type: "invalid_request_error" (default for 4xx) or "server_error" (5xx).
    """

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None, type: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = type or ("server_error" if status >= 500 else "authentication_error" if status == 401 else "invalid_request_error")

    def body(self) -> dict:
        """{"error": {"message", "type", "param", "code"}}."""
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type: str = "invalid_request_error", param: str | None = None, code: str | None = None) -> dict:
    """OpenAI's error object."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def _number(body: dict, name: str, default, low: float, high: float, integer: bool = False):
    value = body.get(name, default)
    if value is None:
        return default
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ApiError(400, f"'{name}' must be {'an integer' if integer else 'a number'}, got {type(value).__name__} {value!r}", name)
    if not low <= value <= high:
        limits = f"at least {low}" if high == float("inf") else f"between {low} and {high}"
        raise ApiError(400, f"'{name}' must be {limits}, got {value!r}", name)
    return value


def _settings(body: dict, max_tokens_cap: int) -> dict:
    """The sampling settings and stop conditions shared by both endpoints.

    As OpenAI's API, a field given as null takes its default (`"n": null` is n = 1), and `seed`
    is any 64-bit integer, negative too (it seeds the generator modulo 2**64). `top_p` 0 keeps
    the most probable token only (top-k 1), the limit of a shrinking nucleus.
    """
    if body.get("n") is not None and (isinstance(body["n"], bool) or body["n"] != 1):
        raise ApiError(400, f"'n' must be 1 (this server makes one choice per request), got {body.get('n')!r}", "n")
    name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = _number(body, name, None, 1, float("inf"), integer=True)
    if max_tokens is not None and max_tokens > max_tokens_cap:
        raise ApiError(400, f"'{name}' is {max_tokens}, more than this server's limit of {max_tokens_cap} "
                       "(minigpt serve --max-tokens)", name, "max_tokens_exceeded")
    stop = body.get("stop")
    if stop is None:
        stop = []
    elif isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or len(stop) > MAX_STOP_SEQUENCES or not all(isinstance(s, str) and s for s in stop):
        raise ApiError(400, f"'stop' must be a non-empty string or a list of up to {MAX_STOP_SEQUENCES} of them, got {body.get('stop')!r}", "stop")
    top_k = _number(body, "top_k", None, 1, 2**31, integer=True) if body.get("top_k") not in (None, 0, -1) else None
    top_p = _number(body, "top_p", 1.0, 0, 1.0)
    if top_p == 0:  # the nucleus of probability 0: the most probable token alone
        top_k, top_p = 1, 1.0
    stream_options = body.get("stream_options") or {}
    if not isinstance(stream_options, dict):
        raise ApiError(400, f"'stream_options' must be an object, got {stream_options!r}", "stream_options")
    stream = body.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise ApiError(400, f"'stream' must be true or false, got {stream!r}", "stream")
    seed = _number(body, "seed", None, -2**63, 2**64 - 1, integer=True)
    return {"max_tokens": max_tokens or max_tokens_cap, "temperature": float(_number(body, "temperature", 1.0, 0, 2)),
            "top_k": top_k, "top_p": None if top_p >= 1 else float(top_p), "stop": stop,
            "seed": None if seed is None else seed % 2**64, "stream": bool(stream),
            "include_usage": bool(stream_options.get("include_usage", False))}


def check_model(body: dict, served_name: str) -> str:
    """The requested model's id: it must be the served one.

    Raises:
        ApiError: 400 no model; 404 another model.
    """
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, f"'model' must be the model's id, a string (this server has {served_name!r}), got {model!r}", "model")
    if model != served_name:
        raise ApiError(404, f"The model {model!r} does not exist: this server serves {served_name!r} (GET /v1/models)",
                       "model", "model_not_found")
    return model


def parse_chat_request(body, served_name: str, max_tokens_cap: int) -> tuple[list, dict]:
    """(messages, settings) of a POST /v1/chat/completions body.

    Messages come back as [{"role", "content": str}]; a content given as a list of parts keeps
    its text parts, joined.

    Raises:
        ApiError: 400 for a body that is not an object, missing or malformed messages, or a bad
            setting; 404 for another model.
    """
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {type(body).__name__}")
    check_model(body, served_name)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, f"'messages' must be a non-empty list of {{'role', 'content'}} objects, got {messages!r:.80}", "messages")
    checked = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise ApiError(400, f"'{where}' must be an object with a 'role' in {', '.join(ROLES)}, got {message!r:.80}", where)
        content = message.get("content")
        if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
            if not all(isinstance(part, dict) and isinstance(part.get("text"), str) for part in content):
                raise ApiError(400, f"'{where}.content' holds a part that is not text; this model reads text only", where)
            content = "".join(part["text"] for part in content)
        if content is None and message["role"] == "assistant":
            content = ""
        if not isinstance(content, str):
            raise ApiError(400, f"'{where}.content' must be a string, got {type(content).__name__}", where)
        checked.append({"role": message["role"], "content": content})
    for name in ("logprobs", "top_logprobs"):  # a client that asks for them would index a null
        if body.get(name):
            raise ApiError(400, f"'{name}' is not supported by this server", name)
    return checked, _settings(body, max_tokens_cap)


def parse_completion_request(body, served_name: str, max_tokens_cap: int) -> tuple[str, dict]:
    """(prompt, settings) of a POST /v1/completions body; the prompt is one string.

    Raises:
        ApiError: as parse_chat_request; a prompt that is not one non-empty string (a list of
            prompts would need n choices).
    """
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {type(body).__name__}")
    check_model(body, served_name)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt:
        raise ApiError(400, f"'prompt' must be one non-empty string, got {prompt!r:.80}", "prompt")
    if body.get("echo") or body.get("suffix") or body.get("logprobs"):
        name = "echo" if body.get("echo") else "suffix" if body.get("suffix") else "logprobs"
        raise ApiError(400, f"'{name}' is not supported by this server", name)
    return prompt, _settings(body, max_tokens_cap)


def parse_classify_request(body) -> list[str]:
    """The texts of a POST /v1/classify body (this server's extension): {"input": str or [str]}.

    Raises:
        ApiError: 400 when input is not a non-empty string or a non-empty list of them.
    """
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {type(body).__name__}")
    texts = body.get("input")
    texts = [texts] if isinstance(texts, str) else texts
    if not isinstance(texts, list) or not texts or not all(isinstance(text, str) and text.strip() for text in texts):
        raise ApiError(400, f"'input' must be a non-empty text or a list of them, got {body.get('input')!r:.80}", "input")
    return texts


def new_id(prefix: str) -> str:
    """A response id such as "chatcmpl-3f2a..."."""
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}


def completion_object(chat: bool, response_id: str, model: str, text: str, finish_reason: str, token_usage: dict) -> dict:
    """A whole (not streamed) "chat.completion" or "text_completion" object."""
    if chat:
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": finish_reason}
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
    return {"id": response_id, "object": "chat.completion" if chat else "text_completion", "created": int(time.time()),
            "model": model, "choices": [choice], "usage": token_usage}


def chunk_object(chat: bool, response_id: str, model: str, text: str | None, finish_reason: str | None,
                 first: bool = False) -> dict:
    """One streamed "chat.completion.chunk" or "text_completion" object."""
    if chat:
        delta = {} if text is None else {"content": text}
        if first:
            delta["role"] = "assistant"
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    else:
        choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish_reason}
    return {"id": response_id, "object": "chat.completion.chunk" if chat else "text_completion", "created": int(time.time()),
            "model": model, "choices": [choice]}
