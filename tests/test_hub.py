"""Downloading from the hub, against a local HTTP server on 127.0.0.1 that imitates it.

The server answers `/{repo}/resolve/main/{file}` like the Hugging Face hub: for the large file a
302 redirect to `/blobs/...` carrying `X-Linked-Size` and `X-Linked-Etag` (the SHA-256), for the
small one a plain 200. Variants break off mid-file, publish a wrong checksum, or ignore ranges.
No test touches the real network.
"""

import hashlib
import http.server
import os
import threading

import numpy as np
import pytest

from minigpt import hub

WEIGHTS = np.random.default_rng(0).bytes(300_000)  # stands in for model.safetensors
CONFIG = b'{"n_embd": 64}'


class HubHandler(http.server.BaseHTTPRequestHandler):
    """Serves WEIGHTS and CONFIG; `server.mode` selects a fault ("ok", "break", "bad-sha", "no-range")."""

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _resolve(self, head: bool):
        server = self.server
        server.requests.append((self.command, self.path, self.headers.get("Range")))
        if self.path.endswith("/resolve/main/config.json"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(CONFIG)))
            self.send_header("ETag", '"0123abcd"')  # a git blob hash, not a SHA-256
            self.end_headers()
            if not head:
                self.wfile.write(CONFIG)
            return
        if self.path.endswith("/resolve/main/model.safetensors"):
            sha = hashlib.sha256(WEIGHTS).hexdigest()
            if server.mode == "bad-sha":
                sha = "0" * 64
            self.send_response(302)
            self.send_header("Location", "/blobs/weights")
            self.send_header("X-Linked-Size", str(len(WEIGHTS)))
            self.send_header("X-Linked-Etag", f'"{sha}"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/blobs/weights" and not head:
            start = 0
            ranged = self.headers.get("Range")
            if ranged and server.mode != "no-range":
                start = int(ranged.split("=")[1].split("-")[0])
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(WEIGHTS) - 1}/{len(WEIGHTS)}")
            else:
                self.send_response(200)
            body = WEIGHTS[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if server.mode == "break" and start == 0:
                self.wfile.write(body[: len(body) // 3])  # then hang up mid-file
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)
            return
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self):
        self._resolve(head=True)

    def do_GET(self):
        self._resolve(head=False)


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HubHandler)
    server.mode = "ok"
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("MINIGPT_HOME", str(tmp_path / "cache"))
    yield server
    server.shutdown()
    server.server_close()


def test_download_verifies_and_caches(fake_hub, tmp_path):
    folder = hub.download("gpt2-small", progress=False)
    assert folder == str(tmp_path / "cache" / "openai-community" / "gpt2")
    with open(os.path.join(folder, "model.safetensors"), "rb") as file:
        assert file.read() == WEIGHTS
    with open(os.path.join(folder, "config.json"), "rb") as file:
        assert file.read() == CONFIG
    count = len(fake_hub.requests)
    hub.download("gpt2-small", progress=False)  # cached: no request at all
    assert len(fake_hub.requests) == count


def test_endpoint_and_cache_follow_environment(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.example/")
    monkeypatch.setenv("MINIGPT_HOME", "/somewhere")
    assert hub.file_url("openai-community/gpt2", "config.json") == "http://mirror.example/openai-community/gpt2/resolve/main/config.json"
    assert hub.cache_dir() == "/somewhere"
    monkeypatch.delenv("HF_ENDPOINT")
    assert hub.endpoint() == "https://huggingface.co"


def test_interrupted_download_is_not_taken_for_good_and_resumes(fake_hub, tmp_path):
    fake_hub.mode = "break"
    with pytest.raises(hub.DownloadError, match="resumes"):
        hub.download_file("openai-community/gpt2", "model.safetensors", progress=False)
    folder = tmp_path / "cache" / "openai-community" / "gpt2"
    assert not (folder / "model.safetensors").exists()  # never under the final name
    partial = (folder / "model.safetensors.incomplete").stat().st_size
    assert 0 < partial < len(WEIGHTS)
    fake_hub.mode = "ok"
    path = hub.download_file("openai-community/gpt2", "model.safetensors", progress=False)
    with open(path, "rb") as file:
        assert file.read() == WEIGHTS
    assert fake_hub.requests[-1][2] == f"bytes={partial}-"  # it resumed with a Range request
    assert not (folder / "model.safetensors.incomplete").exists()


def test_server_ignoring_range_restarts_cleanly(fake_hub, tmp_path):
    folder = tmp_path / "cache" / "openai-community" / "gpt2"
    folder.mkdir(parents=True)
    (folder / "model.safetensors.incomplete").write_bytes(b"garbage from an earlier attempt")
    fake_hub.mode = "no-range"
    path = hub.download_file("openai-community/gpt2", "model.safetensors", progress=False)
    with open(path, "rb") as file:
        assert file.read() == WEIGHTS


def test_wrong_checksum_is_deleted_and_reported(fake_hub, tmp_path):
    fake_hub.mode = "bad-sha"
    with pytest.raises(hub.DownloadError, match="SHA-256"):
        hub.download_file("openai-community/gpt2", "model.safetensors", progress=False)
    folder = tmp_path / "cache" / "openai-community" / "gpt2"
    assert not (folder / "model.safetensors").exists()
    assert not (folder / "model.safetensors.incomplete").exists()


def test_missing_file_names_the_url(fake_hub):
    with pytest.raises(hub.DownloadError, match=r"HTTP 404.*resolve/main/nothing.bin"):
        hub.download_file("openai-community/gpt2", "nothing.bin", progress=False)


def test_no_network_says_where_to_put_the_file(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    monkeypatch.setenv("MINIGPT_HOME", str(tmp_path))
    with pytest.raises(hub.DownloadError, match=r"127\.0\.0\.1:9/openai-community/gpt2/resolve/main/config\.json.*save it as"):
        hub.download_file("openai-community/gpt2", "config.json", timeout=5, progress=False)


def test_unknown_name_is_rejected():
    with pytest.raises(ValueError, match="unknown model 'gpt3'"):
        hub.download("gpt3")
