"""Download OpenAI's GPT-2 weights from the Hugging Face hub into a local cache (book ch. 5.5).

The book downloads TensorFlow checkpoints from OpenAI; minigpt reads the safetensors files that
the hub publishes for the same weights (`openai-community/gpt2`, `-medium`, `-large`, `-xl`),
with nothing but the standard library's HTTP client:

    {endpoint}/{repo_id}/resolve/main/{filename}

where the endpoint is `$HF_ENDPOINT` when set (the variable the Hugging Face tools read for
mirrors) and https://huggingface.co otherwise. Files land in `$MINIGPT_HOME/{repo_id}/`
(default `~/.cache/minigpt`).

How a download is kept safe:
1. A HEAD request, without following the redirect, reads the size and SHA-256 that the hub
   publishes: for a file stored with Git LFS, the `X-Linked-Size` and `X-Linked-Etag` headers
   of the redirect; for a small file, `Content-Length` (its ETag is a git hash, not a SHA-256).
2. The body streams into `FILE.incomplete`, hashed as it arrives, with a progress bar. An
   interrupted download resumes from where it stopped (an HTTP Range request) or, if the server
   ignores the range, restarts from zero.
3. Only a file whose size and SHA-256 match is renamed to its final name; a mismatch deletes the
   partial file and raises. So a file under its final name is always a verified one, and a later
   run uses it without asking the network.

References: Raschka, "Build a Large Language Model (From Scratch)", section 5.5; Hugging Face
hub file download protocol (resolve URLs, X-Linked-Etag / X-Linked-Size headers).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request

from tqdm.auto import tqdm

DEFAULT_ENDPOINT = "https://huggingface.co"

# The hub repositories of OpenAI's four GPT-2 sizes (book ch. 5.5: 124M, 355M, 774M, 1558M).
MODEL_REPOS = {
    "gpt2-small": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
}
MODEL_FILES = ("config.json", "model.safetensors")
_CHUNK_BYTES = 1 << 20  # 1 MiB per read: large enough for speed, small enough for a smooth bar
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")  # owner/name, no "..", no "/x/y"


class DownloadError(OSError):
    """A file could not be downloaded or did not verify; the message says what to do instead."""


def endpoint() -> str:
    """The hub address: `$HF_ENDPOINT` if set, else https://huggingface.co (no trailing slash)."""
    return os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")


def cache_dir() -> str:
    """The cache folder: `$MINIGPT_HOME` if set, else `~/.cache/minigpt`."""
    return os.environ.get("MINIGPT_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "minigpt")


def file_url(repo_id: str, filename: str) -> str:
    """`{endpoint}/{repo_id}/resolve/main/{filename}`."""
    return f"{endpoint()}/{repo_id}/resolve/main/{filename}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Make a redirect visible (as an HTTPError) instead of following it, to read its headers."""

    def redirect_request(self, request, file, code, message, headers, new_url):
        return None


def _published_size_and_sha256(url: str, timeout: float) -> tuple[int | None, str | None]:
    """Ask the hub for a file's size (bytes) and SHA-256 without downloading it."""
    opener = urllib.request.build_opener(_NoRedirect)
    request = urllib.request.Request(url, method="HEAD")
    try:
        response = opener.open(request, timeout=timeout)
        headers = response.headers
        response.close()
    except urllib.error.HTTPError as error:
        if error.code not in (301, 302, 303, 307, 308):
            raise
        headers = error.headers  # the redirect of an LFS file carries the X-Linked-* headers
    size = headers.get("X-Linked-Size") or headers.get("Content-Length")
    etag = (headers.get("X-Linked-Etag") or "").removeprefix("W/").strip('"').lower()
    return (int(size) if size is not None else None), (etag if _SHA256.match(etag) else None)


def _hash_existing(path: str) -> tuple[int, "hashlib._Hash"]:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(_CHUNK_BYTES), b""):
            digest.update(block)
    return os.path.getsize(path), digest


def download_file(repo_id: str, filename: str, directory: str | None = None, timeout: float = 60.0, progress: bool = True) -> str:
    """Download one file of a hub repository into the cache, verified, and return its path.

    A file already in the cache is returned at once (it was verified when it was stored).

    Args:
        repo_id: e.g. "openai-community/gpt2".
        filename: e.g. "model.safetensors".
        directory: where to store it; default `cache_dir()/repo_id`.
        timeout: seconds to wait for the server on each request.
        progress: show a tqdm progress bar (bytes).

    Returns:
        The path of the verified file.

    Raises:
        DownloadError: the server could not be reached or refused (the message names the URL
            and where to put the file by hand), the body ended early, or its size or SHA-256
            differs from what the hub publishes (the partial file is deleted).
    """
    directory = directory or os.path.join(cache_dir(), repo_id)
    final_path = os.path.join(directory, filename)
    if os.path.isfile(final_path):
        return final_path
    os.makedirs(directory, exist_ok=True)
    partial_path = final_path + ".incomplete"
    url = file_url(repo_id, filename)
    by_hand = f"download {url} yourself and save it as {final_path}"
    try:
        expected_size, expected_sha256 = _published_size_and_sha256(url, timeout)
        have, digest = _hash_existing(partial_path) if os.path.isfile(partial_path) else (0, hashlib.sha256())
        if expected_size is not None and have > expected_size:
            have, digest = 0, hashlib.sha256()  # longer than the real file: start again
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if have and response.status != 206:
                have, digest = 0, hashlib.sha256()  # the server ignored the range: restart
            mode = "ab" if have else "wb"
            quiet = {} if progress else {"disable": True}  # otherwise tqdm's TQDM_DISABLE=1 variable decides
            with open(partial_path, mode) as file, tqdm(
                total=expected_size, initial=have, unit="B", unit_scale=True, desc=filename, **quiet
            ) as bar:
                for block in iter(lambda: response.read(_CHUNK_BYTES), b""):
                    file.write(block)
                    digest.update(block)
                    have += len(block)
                    bar.update(len(block))
    except urllib.error.HTTPError as error:
        raise DownloadError(f"{url}: the server answered HTTP {error.code} {error.reason}; {by_hand}") from None
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as error:
        reason = getattr(error, "reason", error)
        kept = (f"the partial file {partial_path} is kept and the next attempt resumes it; "
                if os.path.isfile(partial_path) else "")
        raise DownloadError(f"could not download {url} ({reason}); {kept}without network, {by_hand}") from None
    if expected_size is not None and have != expected_size:
        raise DownloadError(
            f"{url}: received {have:,} bytes but the hub publishes {expected_size:,}; the partial file "
            f"{partial_path} is kept and the next attempt resumes it"
        )
    if expected_sha256 is not None and digest.hexdigest() != expected_sha256:
        os.remove(partial_path)
        raise DownloadError(
            f"{url}: SHA-256 {digest.hexdigest()} differs from the published {expected_sha256}; the "
            f"corrupt file was deleted. Try again, or {by_hand}"
        )
    os.replace(partial_path, final_path)
    return final_path


def download(name: str, progress: bool = True) -> str:
    """Download (or find in the cache) the config and weights of a GPT-2 size; return the folder.

    Args:
        name: "gpt2-small", "gpt2-medium", "gpt2-large", "gpt2-xl", or a hub repo id
            ("owner/name") with a `model.safetensors` in GPT-2's layout.

    Raises:
        ValueError: an unknown name. DownloadError: see `download_file`.
    """
    repo_id = MODEL_REPOS.get(name, name)
    if not _REPO_ID.match(repo_id) or ".." in repo_id:
        # Also keeps the cache path inside the cache: the repo id becomes two folder names.
        raise ValueError(f"unknown model {name!r}: expected one of {', '.join(MODEL_REPOS)} or a hub repo id 'owner/name'")
    folder = os.path.join(cache_dir(), repo_id)
    for filename in MODEL_FILES:
        try:
            download_file(repo_id, filename, progress=progress)  # the message of a failure names the file
        except DownloadError as error:  # fetching by hand: say that the model needs every file
            raise DownloadError(f"{error} (the model needs both {' and '.join(MODEL_FILES)} in {folder})") from None
    return folder
