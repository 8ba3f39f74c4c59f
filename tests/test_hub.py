"""Downloading from the hub, against a local HTTP server on 127.0.0.1 that imitates it
(tests/support/fake_hub.py): LFS redirects with X-Linked-Size / X-Linked-Etag, and injected faults (a body
that breaks off mid-file, a wrong checksum, a server that ignores ranges). No test touches the
real network.
"""

import os

import numpy as np
import pytest

from support.fake_hub import FakeHub
from minigpt import hub

WEIGHTS = np.random.default_rng(0).bytes(300_000)  # stands in for model.safetensors
CONFIG = b'{"n_embd": 64}'


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    files = {"openai-community/gpt2": {"model.safetensors": WEIGHTS, "config.json": CONFIG}}
    with FakeHub(files) as hub_server:
        monkeypatch.setenv("HF_ENDPOINT", hub_server.url)
        monkeypatch.setenv("MINIGPT_HOME", str(tmp_path / "cache"))
        yield hub_server


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
    with pytest.raises(hub.DownloadError, match=r"127\.0\.0\.1:9/openai-community/gpt2/resolve/main/config\.json \(.*\); without network, download .* save it as"):
        hub.download_file("openai-community/gpt2", "config.json", timeout=5, progress=False)
    with pytest.raises(hub.DownloadError, match=r"the model needs both config\.json and model\.safetensors in .*openai-community"):
        hub.download("gpt2-small", progress=False)


def test_unknown_name_is_rejected():
    with pytest.raises(ValueError, match="unknown model 'gpt3'"):
        hub.download("gpt3")


@pytest.mark.parametrize("name", ["../../etc", "a/../b", "/abs/path", "owner/name/extra", "gpt3"])
def test_names_that_would_leave_the_cache_are_rejected(name):
    with pytest.raises(ValueError, match="unknown model"):
        hub.download(name)
