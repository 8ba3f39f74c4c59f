"""A local HTTP server on 127.0.0.1 that answers like Ollama's /api/chat and an OpenAI-compatible
/v1/chat/completions (for tests only; no test touches the network).

`replies` is the list of answers to give, in turn (the last one repeats). `mode` injects faults:
"bad-json" sends a body that is not JSON, "slow" waits `delay` seconds before answering,
"not-found" answers HTTP 404 with the server's error JSON (as Ollama does for an unknown model),
"no-message" sends valid JSON without the answer. Every request's JSON payload is kept in
`requests`.
"""

from __future__ import annotations

import http.server
import json
import threading
import time


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_POST(self):
        server = self.server
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server.requests.append((self.path, payload))
        reply = server.replies[min(len(server.requests) - 1, len(server.replies) - 1)]
        if server.mode == "slow":
            time.sleep(server.delay)
        if server.mode == "not-found":
            error = {"error": f"model '{payload['model']}' not found"}
            if self.path.endswith("/chat/completions"):
                error = {"error": {"message": f"The model `{payload['model']}` does not exist."}}
            return self._send(404, json.dumps(error).encode())
        if server.mode == "bad-json":
            return self._send(200, b"<html>not json</html>")
        if server.mode == "no-message":
            return self._send(200, b'{"done": true}\n' if self.path.endswith("/api/chat") else b'{"choices": []}')
        if self.path.endswith("/api/chat"):
            # Ollama streams the answer a few characters per line, then a last line with done: true.
            pieces = [reply[i:i + 3] for i in range(0, len(reply), 3)] or [""]
            lines = [json.dumps({"model": payload["model"], "message": {"role": "assistant", "content": piece}, "done": False})
                     for piece in pieces]
            lines.append(json.dumps({"model": payload["model"], "message": {"role": "assistant", "content": ""}, "done": True}))
            return self._send(200, ("\n".join(lines) + "\n").encode())
        if self.path.endswith("/v1/chat/completions"):
            body = {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}}]}
            return self._send(200, json.dumps(body).encode())
        return self._send(404, b"404 page not found")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
            pass


class FakeJudge:
    """`with FakeJudge(["85"]) as judge:` serves on judge.url("/api/chat") until the block ends."""

    def __init__(self, replies=("85",), mode: str | None = None, delay: float = 1.0):
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.replies, self.server.mode, self.server.delay = list(replies), mode, delay
        self.server.requests = []
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def requests(self) -> list:
        return self.server.requests

    def url(self, path: str = "/api/chat") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def __enter__(self) -> "FakeJudge":
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.shutdown()
        self.server.server_close()
