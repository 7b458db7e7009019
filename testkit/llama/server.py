#!/usr/bin/env python3
"""The fake llama-server as a process: a stand-in binary for the faults a real one will not
produce on demand (``swarm up --llama-server``, a Spec's binary: :data:`FAKE_LLAMA_SERVER`).

Standard library only, so it runs under whatever ``python3`` is on PATH and starts in
milliseconds; its answers come from ``surface.py`` (the same bodies and SSE as the in-process
fake). Takes llama-server's argv (``-m --host --port -c -ngl --threads --parallel --metrics --alias
--api-key-file --seed -ctk -ctv -fa -kvu -no-kvu``; like llama-server it reads the key file once at start and
answers 401 to a POST without that key) and answers ``POST`` chat requests with "hello from
PORT", as one JSON body or, when the request says ``"stream": true``, as SSE deltas (usage chunk
with ``stream_options.include_usage``, ``n`` choices, then ``[DONE]``) the way the proxy asks its
voters; ``GET /health``, ``/props`` (``total_slots`` = ``--parallel``), ``/v1/models``,
``/metrics``. Fault switches of the process:

    --fake-ignore-sigterm     keep running after SIGTERM (only SIGKILL stops it)
    --fake-never-ready        /health answers 503 "Loading model" forever
    --fake-load-s S           /health answers 503 for S seconds first (default 0.2)
    --fake-exit-after N       exit(3) after answering N chat requests
    --fake-die-after-s S      exit(4) S seconds after becoming ready
    --fake-hang-after-s S     stop answering anything S seconds after becoming ready

An unknown flag exits 1 with llama-server's message, like the real one.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run by path as a binary: make ``testkit`` importable, stdlib only
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from testkit.llama import surface

UNAUTHORIZED = (surface.error("401") or (401, {}))[1]


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-m", "--model", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("-c", "--ctx-size", type=int, default=0)
    p.add_argument("-ngl", "--n-gpu-layers", type=int, default=0)
    p.add_argument("-t", "--threads", type=int, default=-1)
    p.add_argument("-np", "--parallel", type=int, default=1)
    p.add_argument("--metrics", action="store_true")
    p.add_argument("-a", "--alias", default=None)
    p.add_argument("--api-key-file", default=None)
    p.add_argument("--api-key", default=None)
    p.add_argument("-s", "--seed", type=int, default=-1)
    p.add_argument("-ctk", "--cache-type-k", choices=["f16", "q8_0", "q4_0"], default="f16")
    p.add_argument("-ctv", "--cache-type-v", choices=["f16", "q8_0", "q4_0"], default="f16")
    p.add_argument("-fa", "--flash-attn", choices=["on", "off", "auto"], default="auto")
    p.add_argument("-kvu", "--kv-unified", action="store_true")  # what the swarm passes for 2+ slots
    p.add_argument("-no-kvu", "--no-kv-unified", action="store_true")
    p.add_argument("-cram", "--cache-ram", type=int, default=8192)  # the host-RAM prompt cache, MiB
    p.add_argument("--fake-ignore-sigterm", action="store_true")
    p.add_argument("--fake-never-ready", action="store_true")
    p.add_argument("--fake-load-s", type=float, default=0.2)
    p.add_argument("--fake-exit-after", type=int, default=-1)
    p.add_argument("--fake-die-after-s", type=float, default=-1)
    p.add_argument("--fake-hang-after-s", type=float, default=-1)
    args, unknown = p.parse_known_args(argv)
    if unknown:
        print(f"error: invalid argument: {unknown[0]}", file=sys.stderr, flush=True)
        sys.exit(1)
    return args


def main() -> None:
    if "--version" in sys.argv[1:]:
        print("version: 0.0.0-fake (build 0, commit fake)", file=sys.stderr)
        sys.exit(0)
    if "--list-devices" in sys.argv[1:]:
        print("Available devices:")
        sys.exit(0)
    args = parse(sys.argv[1:])
    print(f"fake llama-server pid {os.getpid()} port {args.port} model {args.model}", flush=True)
    if args.fake_ignore_sigterm:
        signal.signal(signal.SIGTERM, lambda *_: print("ignoring SIGTERM", flush=True))
    if not os.path.exists(args.model):
        print(f"error: failed to load model '{args.model}'", file=sys.stderr, flush=True)
        sys.exit(1)
    start = time.monotonic()
    state: dict[str, Any] = {"served": 0, "ready_at": None}
    model = args.alias or args.model
    behaviour = surface.Behaviour(f"hello from {args.port}", slots=args.parallel)
    key = args.api_key
    if args.api_key_file:  # read once at start, as llama-server does
        with open(args.api_key_file, encoding="utf-8") as fh:
            key = fh.read().strip()

    def ready() -> bool:
        return not args.fake_never_ready and time.monotonic() - start >= args.fake_load_s

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *a: object) -> None:
            print(format % a, flush=True)

        def _hung(self) -> bool:
            ra = state["ready_at"]
            return (
                args.fake_hang_after_s >= 0
                and ra is not None
                and time.monotonic() - ra > args.fake_hang_after_s
            )

        def _send(
            self, code: int, body: dict[str, Any] | str, content_type: str = "application/json"
        ) -> None:
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, body: dict[str, Any]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for chunk in surface.stream(behaviour, True, body, model).events():
                self.wfile.write(surface.sse(chunk))
            self.wfile.write(surface.DONE)
            self.wfile.flush()

        def do_GET(self) -> None:
            if self._hung():
                time.sleep(3600)
            if self.path == "/health":
                if ready():
                    if state["ready_at"] is None:
                        state["ready_at"] = time.monotonic()
                    self._send(200, {"status": "ok"})
                else:
                    self._send(*surface.loading())
            elif self.path == "/props":
                self._send(200, surface.props(behaviour, model))
            elif self.path in ("/v1/models", "/models"):
                self._send(200, surface.models(model))
            elif self.path == "/metrics":
                self._send(200, surface.METRICS_TEXT, "text/plain; version=0.0.4")
            else:
                self._send(404, {"error": {"code": 404, "message": "not found"}})

        def do_POST(self) -> None:
            if self._hung():
                time.sleep(3600)
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n)
            if key and self.headers.get("Authorization") != f"Bearer {key}":
                self._send(401, UNAUTHORIZED)
                return
            state["served"] += 1
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                body = {}
            body = body if isinstance(body, dict) else {}
            if body.get("stream"):
                self._stream(body)
            else:
                self._send(200, surface.completion(behaviour, self.path.endswith("/chat/completions"), model))
            if args.fake_exit_after >= 0 and state["served"] >= args.fake_exit_after:
                print(f"exiting after {state['served']} requests", flush=True)
                os._exit(3)

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True

    def watchdog() -> None:
        while True:
            time.sleep(0.05)
            ra = state["ready_at"]
            if (
                args.fake_die_after_s >= 0
                and ra is not None
                and time.monotonic() - ra > args.fake_die_after_s
            ):
                print("dying as asked", flush=True)
                os._exit(4)

    threading.Thread(target=watchdog, daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
