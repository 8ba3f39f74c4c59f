"""Load test of `minigpt serve`: tokens per second for 1, 4 and 16 clients at once, against the
same requests served one at a time.

    python scripts/serve_load.py --checkpoint runs/tiny            # starts its own server
    python scripts/serve_load.py --url http://127.0.0.1:8000       # or measures a running one

For each number of clients C, C * R requests (R = --rounds; prompts of different lengths, greedy,
--max-tokens each) are sent twice:

- one at a time: each request waits for the previous answer (the server never batches);
- together: C clients, each sending its R requests one after another, all clients at once (the
  server batches whatever is in flight; a client's next request joins the running batch).

Reported per C: the tokens made, total tokens/s (tokens / wall time) of both, the mean
per-request tokens/s (a request's tokens / its own latency) of both, and the speed-up of the
total; with --repeat N, the best of N runs of each (other processes on the machine only slow a
run down). Uses only the standard library (urllib, threads).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request

PROMPTS = ["Every effort moves you", "I had always thought Jack Gisburn rather a cheap genius",
           "The sketch of the donkey", "It was not till three years later that", "Mrs. Gisburn said",
           "He laughed", "I turned back to my work, and went on groping and muddling; then I looked at the donkey again",
           "Poor Jack"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--url", help="a running server, e.g. http://127.0.0.1:8000")
    source.add_argument("--checkpoint", help="start `minigpt serve --checkpoint DIR` on a free port for the run")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16], help="numbers of clients at once (default 1 4 16)")
    parser.add_argument("--rounds", type=int, default=2, help="requests each client sends one after another (default 2)")
    parser.add_argument("--max-tokens", type=int, default=64, help="new tokens per request (default 64)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="measure each case this many times, alternating, and keep the best (other processes' noise; default 1)")
    parser.add_argument("--threads", type=int, default=None, help="--threads of the started server (default: all CPUs)")
    return parser.parse_args(argv)


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url + "/v1/completions", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.load(response)


def timed(url: str, body: dict) -> tuple[int, float]:
    """(completion tokens, seconds) of one request."""
    started = time.perf_counter()
    reply = post(url, body)
    return reply["usage"]["completion_tokens"], time.perf_counter() - started


def bodies(model: str, count: int, max_tokens: int) -> list[dict]:
    return [{"model": model, "prompt": PROMPTS[i % len(PROMPTS)], "max_tokens": max_tokens, "temperature": 0}
            for i in range(count)]


def one_at_a_time(url: str, requests: list) -> tuple[list, float]:
    started = time.perf_counter()
    results = [timed(url, body) for body in requests]
    return results, time.perf_counter() - started


def together(url: str, requests: list, clients: int) -> tuple[list, float]:
    results, barrier = [None] * len(requests), threading.Barrier(clients)

    def client(number: int) -> None:
        barrier.wait()
        for index in range(number, len(requests), clients):
            results[index] = timed(url, requests[index])

    threads = [threading.Thread(target=client, args=(number,)) for number in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, time.perf_counter() - started


def summary(results: list, seconds: float) -> tuple[int, float, float]:
    tokens = sum(count for count, _ in results)
    per_request = sum(count / latency for count, latency in results) / len(results)
    return tokens, tokens / seconds, per_request


def start_server(checkpoint: str, threads) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "minigpt", "serve", "--checkpoint", checkpoint, "--port", str(port), "--max-tokens", "4096"]
    if threads:
        command += ["--threads", str(threads)]
    server = subprocess.Popen(command)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            urllib.request.urlopen(url + "/health", timeout=1)
            return server, url
        except OSError:
            if server.poll() is not None:
                raise SystemExit("serve_load: the server did not start")
            time.sleep(0.1)
    server.kill()
    raise SystemExit("serve_load: the server did not answer within 60 s")


def main(argv=None) -> int:
    args = parse_args(argv)
    server = None
    url = args.url
    if args.checkpoint:
        server, url = start_server(args.checkpoint, args.threads)
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/v1/models", timeout=30) as response:
            card = json.load(response)["data"][0]
        url = url.rstrip("/")
        info = card.get("minigpt", {})
        print(f"model {card['id']}: {info.get('parameters', 0):,} parameters, context {info.get('context_length')} | "
              f"{args.max_tokens} tokens per request, {args.rounds} requests per client | load average "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        timed(url, bodies(card["id"], 1, 4)[0])  # warm up
        print(f"{'clients':>7} {'requests':>8} {'tokens':>7} | {'one at a time: total':>20} {'per request':>11} | "
              f"{'together: total':>15} {'per request':>11} | speed-up")
        for clients in args.clients:
            requests = bodies(card["id"], clients * args.rounds, args.max_tokens)
            serial = batched = (0, 0.0, 0.0)
            for _ in range(args.repeat):
                serial = max(serial, summary(*one_at_a_time(url, requests)), key=lambda result: result[1])
                batched = max(batched, summary(*together(url, requests, clients)), key=lambda result: result[1])
            print(f"{clients:>7} {len(requests):>8} {batched[0]:>7} | {serial[1]:>14.1f} tok/s {serial[2]:>7.1f} tok/s | "
                  f"{batched[1]:>9.1f} tok/s {batched[2]:>7.1f} tok/s | {batched[1] / serial[1]:.2f}x")
    finally:
        if server is not None:
            server.terminate()
            server.wait(60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
