"""The batching engine: requests are generated together, as one batch over the KV cache.

One worker thread owns the model and runs one batch, step after step:

    waiting requests -> right-aligned, left-padded prompts, prefilled into the cache beside the
    rows already running (minigpt/serve/kv_rows.py: padding hidden, positions counted per row)
    -> one (B, 1) step per token for every row at once -> finished rows leave the cache

Requests join between steps: a request that arrives while others are being generated is
prefilled and generates from the next step on (up to `max_batch_size` rows; the rest wait for
rows to finish). The first request after an idle time waits `batch_window` seconds for others
sent with it, so that they are prefilled together.

Every row has its own sampling settings and generator (`seed`), its own stop conditions (the
end-of-text token, `stop` strings, `max_tokens`, the context's end) and its own consumer: each
new piece of text is handed to `request.emit` as it is made. A row that is finished, or whose
client went away (`request.cancel()`), leaves the batch at the next step.

A row whose logits are not finite (NaN weights, say) ends with an error event; the other rows
and the server go on. Any other failure of a batch ends its requests with an error event, and
the worker takes the next batch.

Shape letters: B rows of the batch, T tokens, V vocabulary.

References: the book's ch. 4 bonus KV cache (ch04/03_kv-cache); Yu et al. 2022, "Orca: A
Distributed Serving System for Transformer-Based Generative Models" (iteration-level scheduling).
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
from minigpt.serve.kv_rows import cache_capacity, rebuild


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
            ("error", message), or ("shutdown", message) when the server stopped before the answer
            was complete (see BatchEngine.drain). Exactly one "done", "error" or "shutdown" ends
            every request.
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

    @property
    def remaining(self) -> int:
        """Tokens this row may still make."""
        return self.request.max_tokens - self.tokens

    def fail(self, message: str, kind: str = "error") -> None:
        """End the row with an ("error", message) event, or ("shutdown", message)."""
        if not self.done:
            self.done = True
            self.request.emit((kind, message))


class BatchEngine:
    """A worker thread that generates requests together, joining and leaving one KV-cache batch.

    Args:
        model: a GPTModel (with `reset_kv_cache` and `forward(ids, use_cache=True, last_only=True)`).
        tokenizer: its tokenizer (`decode_bytes` or `decode`).
        eos_id: the end-of-text id, or None.
        max_batch_size: rows generated together at most (>= 1).
        batch_window: seconds that the first request after an idle time waits for others.

    Attributes:
        admissions: how many times requests were prefilled into the batch (a group at a time).
        largest_batch: the most rows generated together. steps: batched decoding steps.
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
        self.rows: list = []  # the batch: running rows, in the cache's row order
        self.logits = None  # (B, V): each row's next-token logits
        self.deadline: float | None = None  # time.monotonic() at which drain() ends what is left
        self.admissions = self.largest_batch = self.steps = self.generated_tokens = 0

    def start(self) -> None:
        """Start the worker thread (once)."""
        if self.thread is None:
            self.running = True
            self.thread = threading.Thread(target=self._work, name="minigpt-serve-engine", daemon=True)
            self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Take no more requests; let the rows in progress finish (up to `timeout` seconds).

        Requests still waiting get an error event.
        """
        with self.wakeup:
            self.running = False
            self.wakeup.notify_all()
        if self.thread is not None:
            self.thread.join(timeout)
        while self.pending:
            self.pending.popleft().emit(("shutdown", "the server is shutting down"))

    def drain(self, seconds: float) -> None:
        """The server is shutting down: rows and waiting requests that are not finished `seconds`
        from now end then, with a ("shutdown", message) event (so that every response ends in
        order before the web server's own shutdown timeout closes the connections). A later call
        can only bring the deadline nearer."""
        with self.wakeup:
            deadline = time.monotonic() + max(0.0, seconds)
            self.deadline = deadline if self.deadline is None else min(self.deadline, deadline)
            self.wakeup.notify_all()

    def _cut(self) -> None:
        """drain()'s deadline passed: end every row and waiting request."""
        message = "the server is shutting down: this answer was cut short (minigpt serve --shutdown-timeout)"
        for row in self.rows:
            row.fail(message + f" after {row.tokens} token{'' if row.tokens == 1 else 's'}", "shutdown")
        self.rows, self.logits = [], None
        with self.wakeup:
            while self.pending:
                self.pending.popleft().emit(("shutdown", message))

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

    def _take(self, room: int) -> list:
        with self.wakeup:
            taken = []
            while self.pending and len(taken) < room:
                request = self.pending.popleft()
                if not request.cancelled:
                    taken.append(request)
            return taken

    def _work(self) -> None:
        while True:
            with self.wakeup:
                while self.running and not self.rows and not self.pending:
                    self.wakeup.wait()
                if not self.running and not self.rows:
                    return
                joining = self.running and bool(self.pending) and len(self.rows) < self.max_batch_size
            if self.deadline is not None and time.monotonic() >= self.deadline:
                self._cut()
                continue
            if joining and not self.rows:
                time.sleep(self.batch_window)  # let requests sent together arrive
            try:
                if joining:
                    self.admit(self._take(self.max_batch_size - len(self.rows)))
                self.step()
            except Exception as error:  # noqa: BLE001 (any failure ends the batch's requests, not the server)
                for row in self.rows:
                    row.fail(f"generation failed: {type(error).__name__}: {error}")
                self.rows, self.logits = [], None

    def admit(self, requests: list) -> None:
        """Prefill new requests into the batch, beside the rows already running."""
        if not requests:
            return
        new_rows = [_Row(request, self.tokenizer, self.eos_id) for request in requests]
        prompts = [np.asarray(row.request.prompt_ids, np.int64) for row in new_rows]
        longest = max(len(prompt) for prompt in prompts)
        ids = np.zeros((len(prompts), longest), np.int64)  # (N, T): padding id 0, hidden by the mask
        for b, prompt in enumerate(prompts):
            ids[b, longest - len(prompt):] = prompt  # right-aligned: new tokens share columns
        padding = np.array([longest - len(prompt) for prompt in prompts])
        slots = max(longest, self.model.current_pos if self.rows else 0)
        try:
            with no_grad():
                logits = rebuild(self.model, np.arange(len(self.rows)), ids, padding, self._capacity(self.rows + new_rows, slots))
        except Exception as error:  # noqa: BLE001 (the caller fails the running rows; these are not in the batch yet)
            for row in new_rows:
                row.fail(f"generation failed: {type(error).__name__}: {error}")
            raise
        self.logits = logits if not self.rows else np.concatenate([self.logits, logits])
        self.rows = self.rows + new_rows
        self.admissions += 1
        self.largest_batch = max(self.largest_batch, len(self.rows))

    def _capacity(self, rows: list, slots: int) -> int:
        # Each token a row may still make needs at most one slot (its last one none).
        return min(self.context_length, slots + max(row.remaining for row in rows))

    def step(self) -> None:
        """Choose every row's next token; drop finished rows; feed the new tokens (one (B, 1) pass)."""
        if not self.rows:
            return
        self._choose(self.rows, self.logits)
        with no_grad():
            self._drop_finished()
            if self.rows and self.model.current_pos >= cache_capacity(self.model):
                self._make_room()
            if not self.rows:
                return
            ids = np.array([[row.last_token] for row in self.rows], np.int64)  # (B, 1)
            self.logits = self.model(ids, use_cache=True, last_only=True).data[:, -1, :]  # (B, 1) -> (B, V)
        self.steps += 1

    def _drop_finished(self) -> None:
        alive = [b for b, row in enumerate(self.rows) if not row.done]
        if len(alive) == len(self.rows):
            return
        self.rows = [self.rows[b] for b in alive]
        if not self.rows:
            self.model.reset_kv_cache(1)
            self.logits = None
            return
        slots = self.model.current_pos
        rebuild(self.model, np.array(alive), None, None, self._capacity(self.rows, slots))  # also frees unused front slots
        self.logits = self.logits[alive]

    def _make_room(self) -> None:
        """The cache is full: grow it, or at the context's end finish the rows that fill the whole context."""
        padding = self.model.left_padding if self.model.left_padding is not None else np.zeros(len(self.rows), np.int64)
        if self.model.current_pos >= self.context_length:
            for row, pad in zip(self.rows, padding):
                if pad == 0:  # its prompt and answer fill the context: nothing more can follow
                    row.finish("length")
            self._drop_finished()
        if self.rows:
            rebuild(self.model, np.arange(len(self.rows)), None, None, self._capacity(self.rows, self.model.current_pos + 1))

    def run_together(self, requests: list) -> None:
        """Generate `requests` to their ends in this thread, as one batch (for tests and scripts)."""
        self.admit(list(requests))
        while self.rows:
            self.step()

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
