"""A local HTTP server on 127.0.0.1 that answers like the Hugging Face hub (for tests only).

`/{repo}/resolve/main/{file}` answers HEAD and GET. Files named in `lfs` get what the hub sends
for Git LFS files: a 302 redirect to `/blobs/{repo}/{file}` carrying `X-Linked-Size` and
`X-Linked-Etag` (the SHA-256); other files are served directly with a git-style ETag. `mode`
injects faults: "break" hangs up a third of the way through a fresh LFS body, "bad-sha"
publishes a wrong checksum, "no-range" ignores Range requests. No test touches the network.
"""

from __future__ import annotations

import hashlib
import http.server
import threading


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def _answer(self, head: bool) -> None:
        hub = self.server
        hub.requests.append((self.command, self.path, self.headers.get("Range")))
        if "/resolve/main/" in self.path:
            repo, filename = self.path.lstrip("/").split("/resolve/main/", 1)
            body = hub.files.get(repo, {}).get(filename)
            if body is None:
                return self._empty(404)
            if filename not in hub.lfs:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", '"0123abcd"')  # a git blob hash, not a SHA-256
                self.end_headers()
                if not head:
                    self.wfile.write(body)
                return
            sha256 = "0" * 64 if hub.mode == "bad-sha" else hashlib.sha256(body).hexdigest()
            self.send_response(302)
            self.send_header("Location", f"/blobs/{repo}/{filename}")
            self.send_header("X-Linked-Size", str(len(body)))
            self.send_header("X-Linked-Etag", f'"{sha256}"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path.startswith("/blobs/") and not head:
            repo, filename = self.path[len("/blobs/"):].rsplit("/", 1)
            body = hub.files.get(repo, {}).get(filename)
            if body is None:
                return self._empty(404)
            start = 0
            ranged = self.headers.get("Range")
            if ranged and hub.mode != "no-range":
                start = int(ranged.split("=")[1].split("-")[0])
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            if hub.mode == "break" and start == 0:
                self.wfile.write(body[: len(body) // 3])  # then hang up mid-file
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body[start:])
            return
        self._empty(404)

    def _empty(self, code: int) -> None:
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self):
        self._answer(head=True)

    def do_GET(self):
        self._answer(head=False)


class FakeHub:
    """Serve `files` ({repo_id: {filename: bytes}}) on 127.0.0.1; use as a context manager.

    Attributes:
        url: the endpoint to put in HF_ENDPOINT. mode: the fault to inject ("ok" by default).
        requests: (method, path, Range header) of every request received.
    """

    def __init__(self, files: dict, lfs=("model.safetensors",)):
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.files, self.server.lfs = files, set(lfs)
        self.server.mode, self.server.requests = "ok", []
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def mode(self) -> str:
        return self.server.mode

    @mode.setter
    def mode(self, value: str) -> None:
        self.server.mode = value

    @property
    def requests(self) -> list:
        return self.server.requests

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.shutdown()
        self.server.server_close()
