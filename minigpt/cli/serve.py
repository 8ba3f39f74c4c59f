"""`minigpt serve`: a chat page in the browser and an OpenAI-compatible API over a model.

    pip install -e ".[serve]"
    minigpt serve --checkpoint runs/tiny           # then open http://127.0.0.1:8000
    minigpt serve --checkpoint runs/assistant      # an instruction-tuned run: the book's Alpaca prompt
    minigpt serve --checkpoint runs/classify       # a classifier: a text box that labels texts
    minigpt serve --model gpt2-small --api-key SECRET --host 0.0.0.0

The server is Starlette on uvicorn (the optional extra `serve`); the page, the API and the
batching engine are in minigpt/serve/ and docs/serve.md. Ctrl-C or SIGTERM stops taking new
connections, lets the responses in flight finish (up to --shutdown-timeout seconds), and exits.
"""

from __future__ import annotations

import os
import socket
import sys

from minigpt.cli.common import add_threads_argument, fail, kernels_note

COMMAND = "serve"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        COMMAND, help="a chat page and an OpenAI-compatible HTTP API over a model",
        description="Serve a checkpoint (of `minigpt train`, `finetune instruct` or `finetune classify`) or OpenAI's "
        "GPT-2: a web page at / and an OpenAI-compatible API at /v1 (models, chat/completions, completions, and "
        "classify for classifiers). Needs the extra: pip install \"minigpt[serve]\".")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", metavar="DIR", help="a run directory or its checkpoint.safetensors")
    source.add_argument("--model", help="gpt2-small, gpt2-medium, gpt2-large, gpt2-xl, or a Hugging Face GPT-2 directory / .safetensors file")
    parser.add_argument("--name", default=None, help="the model's id in the API (default: the run directory's name, or --model)")
    parser.add_argument("--host", default="127.0.0.1", help="the interface to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="the TCP port (default 8000; 0 picks a free one)")
    parser.add_argument("--api-key", default=os.environ.get("MINIGPT_API_KEY") or None,
                        help="require 'Authorization: Bearer KEY' on every /v1 request (default: $MINIGPT_API_KEY, else none)")
    parser.add_argument("--max-tokens", type=int, default=512,
                        help="new tokens per request at most, and the default when a request gives none (default 512)")
    parser.add_argument("--max-body-bytes", type=int, default=1_000_000, help="the largest request body, in bytes (default 1000000)")
    parser.add_argument("--max-batch-size", type=int, default=16, help="requests generated together in one batch at most (default 16)")
    parser.add_argument("--batch-window", type=float, default=10.0,
                        help="milliseconds to wait after a request for others to join its batch (default 10)")
    parser.add_argument("--shutdown-timeout", type=float, default=30.0,
                        help="seconds that Ctrl-C / SIGTERM lets the responses in flight run before closing them (default 30)")
    add_threads_argument(parser)


def _check(args) -> None:
    if not 0 <= args.port <= 65535:
        fail(COMMAND, f"--port must be between 0 and 65535, got {args.port}")
    for flag, value in (("--max-tokens", args.max_tokens), ("--max-body-bytes", args.max_body_bytes),
                        ("--max-batch-size", args.max_batch_size)):
        if value < 1:
            fail(COMMAND, f"{flag} must be >= 1, got {value}")
    if not 0 <= args.batch_window <= 10_000:
        fail(COMMAND, f"--batch-window must be between 0 and 10000 milliseconds, got {args.batch_window}")
    if not args.shutdown_timeout >= 0:
        fail(COMMAND, f"--shutdown-timeout must be >= 0 seconds, got {args.shutdown_timeout}")
    if args.api_key is not None and not args.api_key.strip():
        fail(COMMAND, "--api-key is empty: give a key, or leave the flag out to serve without one")
    if args.api_key is not None and not (args.api_key.isascii() and args.api_key.isprintable()):
        fail(COMMAND, "--api-key must be printable ASCII (HTTP clients send it in a header), got other characters")


def _import_stack():
    """uvicorn, or a clear message naming the extra to install."""
    try:
        import starlette  # noqa: F401
        import uvicorn
    except ImportError as error:
        fail(COMMAND, f"the web server is an optional extra that is not installed ({error.name} is missing): "
                      "pip install \"minigpt[serve]\" (in a clone: pip install -e \".[serve]\")")
    return uvicorn


def run(args) -> int:
    """Run `minigpt serve` until Ctrl-C or SIGTERM."""
    from minigpt.interrupts import exit_status

    _check(args)
    uvicorn = _import_stack()
    from minigpt.serve import create_app, load_served_model

    try:
        served = load_served_model(args.checkpoint, args.model, args.name)
    except (FileNotFoundError, ValueError, KeyError) as error:
        fail(COMMAND, f"{'--checkpoint' if args.checkpoint else '--model'}: {error}")
    except Exception as error:  # noqa: BLE001 (a download that failed, say: one line, not a traceback)
        fail(COMMAND, f"--model {args.model}: {type(error).__name__}: {error}")
    app = create_app(served, api_key=args.api_key, max_tokens=args.max_tokens, max_body_bytes=args.max_body_bytes,
                     max_batch_size=args.max_batch_size, batch_window=args.batch_window / 1000)
    info = served.describe()
    print(f"minigpt serve: {served.name} ({served.kind}, {info['parameters']:,} parameters, context {info['context_length']}) "
          f"from {served.source}{kernels_note(args)}", file=sys.stderr)
    listener = _listen(args.host, args.port)
    port = listener.getsockname()[1]  # the one the system chose for --port 0
    if args.host not in LOCAL_HOSTS:
        print(f"warning: listening on {args.host}, not only this machine: anyone who can reach it can use the model"
              + ("" if args.api_key else " (no --api-key is set)"), file=sys.stderr)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(args.host, args.host)  # every interface: this machine's among them
    host = f"[{host}]" if ":" in host else host
    print(f"open http://{host}:{port}/ (API: http://{host}:{port}/v1); Ctrl-C stops", file=sys.stderr)
    config = uvicorn.Config(app, host=args.host, port=port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=args.shutdown_timeout, lifespan="on")
    server = _draining_server(uvicorn, config, app.state.engine)
    try:
        server.run(sockets=[listener])
    except SystemExit:  # uvicorn could not start (it logged why)
        fail(COMMAND, f"the web server could not start on {args.host}:{port}")
    except KeyboardInterrupt:  # uvicorn finished the responses in flight, then passed the signal on
        _report_stop(app)
        return exit_status()
    _report_stop(app)  # stopped by a signal this process ignores otherwise (SIGINT in a background job)
    return 0


def _listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port), or a one-line error naming both (in use, not this machine's...)."""
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a restart need not wait for TIME_WAIT
    try:
        listener.bind((host, port))
    except OSError as error:  # in use, a privileged port, or an address/name this machine does not have
        listener.close()
        fail(COMMAND, f"cannot listen on {host}:{port}: {error.strerror or error} (another --port, or --host 127.0.0.1?)")
    return listener


def _draining_server(uvicorn, config, engine):
    """uvicorn's Server, which at Ctrl-C / SIGTERM first tells the engine to end what is still
    generating a little before --shutdown-timeout, so that every response ends in order (an error
    event and [DONE], or a 503) rather than being cut mid-stream when uvicorn closes the connections;
    a second Ctrl-C / SIGTERM ends them at once, a third exits at once."""

    class DrainingServer(uvicorn.Server):
        hurried = False

        async def shutdown(self, sockets=None):
            engine.drain(self.config.timeout_graceful_shutdown - 0.25)  # uvicorn waits 0.1 s + the timeout
            await super().shutdown(sockets=sockets)

        def handle_exit(self, sig, frame):
            # A second Ctrl-C: uvicorn would cancel every response mid-way (a traceback each); end
            # them now instead, in order, at the engine's next step. A third one forces the exit.
            if self.should_exit and not self.hurried:
                self.hurried = True
                engine.drain(0)
                return
            super().handle_exit(sig, frame)

    return DrainingServer(config)


def _report_stop(app) -> None:
    engine = app.state.engine
    print(f"minigpt {COMMAND}: stopped; {engine.generated_tokens:,} tokens generated in {engine.steps:,} batched steps",
          file=sys.stderr)
