"""The batching engine: requests that arrive together are generated as one batch with the KV cache.

One worker thread owns the model. It waits for a request, then `batch_window` seconds more for
others, takes up to `max_batch_size` of them, and generates them as one batch:

    prompts of different lengths -> right-aligned, left-padded ids (B, T_max)
    -> reset_kv_cache(capacity, left_padding): padding slots hidden, positions counted per row
    -> one forward pass over the prompts, then one (B, 1) step per token for every row at once

Every row has its own sampling settings and generator (`seed`), its own stop conditions (the
end-of-text token, `stop` strings, `max_tokens`, the context's end) and its own consumer: each
new piece of text is handed to `request.emit` as it is made. A row that is finished (or whose
client went away: `request.cancel()`) sends nothing more; when every row is finished the batch
ends. Requests join at batch boundaries: what arrives while a batch runs waits for the next one.

A row whose logits are not finite (NaN weights, say) ends with an error event; the other rows
and the server go on. Any other failure of a batch ends its requests with an error event, and
the worker takes the next batch.

Shape letters: B rows of the batch, T tokens, V vocabulary.

References: the book's ch. 4 bonus KV cache (`gpt_with_kv_cache_optimized.py`, batched with
left padding); Yu et al. 2022, "Orca" (iteration-level scheduling, which this engine does not do:
requests join between batches, not between steps).
"""

from __future__ import annotations

import codecs
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from autograd import no_grad
from minigpt.generate import next_token_ids


@dataclass
class GenerationRequest:
    """One request for the engine: a prompt, its sampling settings, stop conditions and a consumer.

    Attributes:
        prompt_ids: int token ids of the prompt, 1 <= len < the model's context.
        max_tokens: new tokens at most (>= 1).
        temperature: 0 greedy, > 0 sampling. top_k, top_p: None or as `minigpt.generate.generate`.
        stop: strings that end the text (not included in it).
        seed: seed of this request's sampling generator (None: unseeded).
        strip_leading: drop whitespace before the first visible character (an instruct answer,
            as `minigpt chat` and the book's `extract_response`).
        emit: called from the engine's thread with each event: ("text", str),
            ("done", finish_reason, completion_tokens) with finish_reason "stop" or "length",
            or ("error", message). Exactly one "done" or "error" ends every request.
    """

    prompt_ids: list
    max_tokens: int
    emit: object
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    stop: list = field(default_factory=list)
    seed: int | None = None
    strip_leading: bool = False
    cancelled: bool = False

    def cancel(self) -> None:
        """Stop generating this request (its client went away); no more events are sent."""
        self.cancelled = True


class _Row:
    """A request's state inside a batch: its generator, its text so far, and whether it is done."""

    def __init__(self, request: GenerationRequest, tokenizer, eos_id):
        self.request, self.tokenizer, self.eos_id = request, tokenizer, eos_id
        self.rng = np.random.default_rng(request.seed)
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.decode_bytes = getattr(tokenizer, "decode_bytes", None)
        self.text, self.sent, self.tokens, self.done = "", 0, 0, False
        self.last_token = 0  # fed to the model at the next step
        self.hold = max((len(stop) for stop in request.stop), default=1) - 1  # characters that may start a stop string

    def _decode(self, token: int) -> str:
        if self.decode_bytes is not None:  # GPT-2's bytes: a character split over tokens comes out whole
            return self.decoder.decode(self.decode_bytes([token]))
        return self.tokenizer.decode([token])

    def add(self, token: int) -> None:
        """Take the row's next token: emit the text that is now certain, finish on a stop condition."""
        self.last_token = token
        if self.eos_id is not None and token == self.eos_id:
            return self.finish("stop")
        self.tokens += 1
        self.text += self._decode(token)
        if self.request.strip_leading and self.sent == 0:
            self.text = self.text.lstrip()
        for stop in self.request.stop:
            at = self.text.find(stop, max(self.sent - len(stop), 0))
            if at >= 0:
                self.text = self.text[:at]
                return self.finish("stop")
        if self.tokens >= self.request.max_tokens:
            return self.finish("length")
        self._send(len(self.text) - self.hold)  # keep back what could start a stop string

    def _send(self, end: int) -> None:
        if end > self.sent:
            self.request.emit(("text", self.text[self.sent:end]))
            self.sent = end

    def finish(self, reason: str) -> None:
        """End the row: the rest of its text, then ("done", reason, tokens)."""
        if self.done:
            return
        self.done = True
        if self.request.cancelled:
            return
        if self.decode_bytes is not None and reason != "stop":
            self.text += self.decoder.decode(b"", final=True)  # an unfinished character: U+FFFD
        self._send(len(self.text))
        self.request.emit(("done", reason, self.tokens))

    def fail(self, message: str) -> None:
        if not self.done:
            self.done = True
            self.request.emit(("error", message))


class BatchEngine:
    """A worker thread that generates queued requests in batches over one model's KV cache.

    Args:
        model: a GPTModel (with `reset_kv_cache` and `forward(ids, use_cache=True, last_only=True)`).
        tokenizer: its tokenizer (`decode_bytes` or `decode`).
        eos_id: the end-of-text id, or None.
        max_batch_size: rows per batch at most (>= 1).
        batch_window: seconds to wait, after the first request, for others to join its batch.

    Attributes:
        batches: how many batches ran. largest_batch: the most rows a batch had.
        generated_tokens: new tokens made in all.

    Raises:
        ValueError: max_batch_size < 1 or batch_window < 0.
    """

    def __init__(self, model, tokenizer, eos_id=None, max_batch_size: int = 16, batch_window: float = 0.01):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if not batch_window >= 0:
            raise ValueError(f"batch_window must be >= 0 seconds, got {batch_window}")
        self.model, self.tokenizer, self.eos_id = model, tokenizer, eos_id
        self.max_batch_size, self.batch_window = max_batch_size, batch_window
        self.context_length = int(model.cfg.context_length)
        self.pending: deque = deque()
        self.wakeup = threading.Condition()
        self.running = False
        self.thread: threading.Thread | None = None
        self.batches = self.largest_batch = self.generated_tokens = 0

    def start(self) -> None:
        """Start the worker thread (once)."""
        if self.thread is None:
            self.running = True
            self.thread = threading.Thread(target=self._work, name="minigpt-serve-engine", daemon=True)
            self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Let the batch in progress finish (up to `timeout` seconds), then end the worker.

        Requests still waiting get an error event.
        """
        with self.wakeup:
            self.running = False
            self.wakeup.notify_all()
        if self.thread is not None:
            self.thread.join(timeout)
        while self.pending:
            self.pending.popleft().emit(("error", "the server is shutting down"))

    def submit(self, request: GenerationRequest) -> None:
        """Queue a request; its events come from the worker thread.

        Raises:
            RuntimeError: the engine is stopped.
        """
        with self.wakeup:
            if not self.running:
                raise RuntimeError("the engine is not running (the server is shutting down)")
            self.pending.append(request)
            self.wakeup.notify_all()

    def _take_batch(self) -> list:
        with self.wakeup:
            while self.running and not self.pending:
                self.wakeup.wait()
            if not self.running:
                return []
        time.sleep(self.batch_window)  # let requests sent together arrive
        with self.wakeup:
            batch = []
            while self.pending and len(batch) < self.max_batch_size:
                request = self.pending.popleft()
                if not request.cancelled:
                    batch.append(request)
            return batch

    def _work(self) -> None:
        while self.running:
            requests = self._take_batch()
            if not requests:
                continue
            rows = [_Row(request, self.tokenizer, self.eos_id) for request in requests]
            self.batches += 1
            self.largest_batch = max(self.largest_batch, len(rows))
            try:
                self.generate_batch(rows)
            except Exception as error:  # noqa: BLE001 (any failure ends this batch's requests, not the server)
                for row in rows:
                    row.fail(f"generation failed: {type(error).__name__}: {error}")

    def generate_batch(self, rows: list) -> None:
        """Generate every row of a batch to its end (see the module docstring)."""
        prompts = [np.asarray(row.request.prompt_ids, np.int64) for row in rows]
        lengths = np.array([len(prompt) for prompt in prompts])
        longest = int(lengths.max())
        ids = np.zeros((len(rows), longest), np.int64)  # (B, T): padding id 0, hidden by the mask
        for b, prompt in enumerate(prompts):
            ids[b, longest - len(prompt):] = prompt  # right-aligned: new tokens share columns
        most_new = max(row.request.max_tokens for row in rows)
        # The last token is never fed back, so the cache holds the prompt and most_new - 1 more.
        capacity = min(self.context_length, longest + most_new - 1)
        with no_grad():
            self.model.reset_kv_cache(max(capacity, longest), longest - lengths)
            logits = self.model(ids, use_cache=True, last_only=True).data[:, -1, :]  # (B, T) -> (B, V)
            while True:
                self._choose(rows, logits)
                if all(row.done for row in rows):
                    return
                if self.model.current_pos >= capacity:  # the context is full: no row can go on
                    for row in rows:
                        row.finish("length")
                    return
                step = np.array([[row.last_token] for row in rows], np.int64)  # (B, 1)
                logits = self.model(step, use_cache=True, last_only=True).data[:, -1, :]  # (B, 1) -> (B, V)

    def _choose(self, rows: list, logits: np.ndarray) -> None:
        """Each running row's next token from its logits (B, V), with its own settings."""
        for b, row in enumerate(rows):
            if row.done:
                continue
            if row.request.cancelled:
                row.finish("cancelled")
                continue
            request = row.request
            try:
                token = next_token_ids(logits[b:b + 1], request.temperature, request.top_k, request.top_p,
                                       row.rng if request.temperature > 0 else None)[0]
            except FloatingPointError as error:  # NaN/inf logits: this row has no next token
                row.fail(f"generation failed: {error}")
                continue
            self.generated_tokens += 1
            row.add(int(token))
