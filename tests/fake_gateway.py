"""A local stand-in for the WhatsApp gateway and the WhatsApp Business Cloud API, for tests and benchmarks.

In-process (threads, 127.0.0.1, a free port):

    with FakeGateway() as gateway:
        settings = load_settings(whatsapp_provider="gateway", whatsapp_gateway_url=gateway.url, ...)
        ...
        gateway.configure(fail_fraction=0.05)          # every 20th POST /send answers 503
        gateway.configure(down="refuse")                # connections refused until told otherwise
        gateway.configure(down=None)
        assert len(gateway.messages()) == 200

As a separate process (for tests whose Celery workers run in subprocesses), from the repository root:

    python -m tests.fake_gateway --port 0 --control-port 0 --lifetime 600

prints one line `READY {"url": ..., "control_url": ...}` and serves until SIGTERM, the lifetime, or the death of
its parent. `FakeGatewayProcess` wraps that. The control URL stays up while the gateway is "down":
`GET /messages`, `GET /stats`, `POST /control` (a JSON object of `configure` arguments), `POST /reset`.

The gateway (`POST /send`, JSON {"phone", "message", "idempotency_key"}) records each accepted message once per
idempotency key; a repeated key answers 200 with the first id and `"duplicate": true`. The Cloud API
(`POST /{version}/{phone_number_id}/messages`) checks the bearer token and the template payload and answers
like Meta, including its error bodies.

Everything stops by itself: the servers run on daemon threads, every wait is bounded, and a watchdog shuts the
servers down after `lifetime` seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

ROOT = Path(__file__).resolve().parent.parent
# Longest latency a test may ask for; keeps every handler bounded.
MAX_LATENCY = 30.0
_CLOUD_PATH = re.compile(r"^/(?:(v\d+(?:\.\d+)?)/)?([^/]+)/messages$")
_CONFIG_KEYS = {
    "fail_fraction",
    "down",
    "latency",
    "reject_status",
    "reject_phones",
    "token",
    "no_id",
    "cloud_token",
    "cloud_templates",
    "cloud_fail_next",
    "cloud_fail_phones",
    "senders",
    "cloud_senders",
}


@dataclass
class _State:
    """Everything the handlers share, guarded by `lock`."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    messages: list[dict[str, Any]] = field(default_factory=list)
    ids_by_key: dict[str, str] = field(default_factory=dict)
    send_requests: int = 0
    # /send requests being answered right now (a latency holds them)
    in_flight: int = 0
    counted_requests: int = 0
    failed_503: int = 0
    rejected: int = 0
    duplicates: int = 0
    cloud_requests: int = 0
    cloud_errors: int = 0
    next_id: int = 0
    # configuration
    fail_fraction: float = 0.0
    down: str | None = None
    latency: float = 0.0
    reject_status: int | None = None
    reject_phones: set[str] = field(default_factory=set)
    token: str | None = None
    no_id: bool = False
    cloud_token: str | None = None
    # template name -> number of body parameters; None accepts any template
    cloud_templates: dict[str, int] | None = None
    # each: {"code": 131049, "status": 400, "message": "..."}
    cloud_fail_next: deque[dict[str, Any]] = field(default_factory=deque)
    cloud_fail_phones: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The gateway sessions (sender_id) and Cloud API phone number ids that exist; None accepts any.
    senders: set[str] | None = None
    cloud_senders: set[str] | None = None

    def new_id(self, prefix: str) -> str:
        self.next_id += 1
        return f"{prefix}{self.next_id:08d}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], gateway: FakeGateway, *, control_only: bool) -> None:
        self.gateway = gateway
        self.control_only = control_only
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Idle keep-alive connections are dropped after this long (httpx drops its own idle ones after 5 s).
    timeout = 30
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as separate writes; without this, Nagle and delayed ACKs add 40 ms to each.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read what was received through `messages()`."""

    # --- plumbing ---

    def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if length > 1_000_000:
            raise ValueError("body too large")
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw.decode("utf-8")) if raw else None

    def do_GET(self) -> None:
        gateway = self.server.gateway
        if self.path == "/messages":
            self._reply(200, {"messages": gateway.messages()})
        elif self.path == "/stats":
            self._reply(200, gateway.stats())
        elif self.path == "/healthz":
            self._reply(200, {"ok": True})
        else:
            self._reply(404, {"error": "not found"})

    def do_POST(self) -> None:
        try:
            body = self._read_json()
        except ValueError:
            self._reply(400, {"error": "invalid JSON"})
            return
        gateway = self.server.gateway
        if self.path == "/control":
            try:
                gateway.configure(**(body or {}))
            except (TypeError, ValueError) as exc:
                self._reply(400, {"error": str(exc)})
                return
            self._reply(200, gateway.stats())
        elif self.path == "/reset":
            gateway.reset()
            self._reply(200, gateway.stats())
        elif self.server.control_only:
            self._reply(404, {"error": "control server: use the gateway URL"})
        elif self.path == "/send":
            self._send(gateway, body)
        elif match := _CLOUD_PATH.match(self.path):
            self._cloud(gateway, match.group(2), body, version=match.group(1))
        else:
            self._reply(404, {"error": "not found"})

    # --- the gateway ---

    def _send(self, gateway: FakeGateway, body: Any) -> None:
        state = gateway.state
        with state.lock:
            state.in_flight += 1
        try:
            self._send_counted(gateway, body)
        finally:
            with state.lock:
                state.in_flight -= 1

    def _send_counted(self, gateway: FakeGateway, body: Any) -> None:
        state = gateway.state
        with state.lock:
            state.send_requests += 1
            down, latency, token = state.down, state.latency, state.token
        if down is not None:
            with state.lock:
                state.failed_503 += 1
            self._reply(503, {"error": "gateway down"}, {"Retry-After": "1"})
            return
        if token and self.headers.get("Authorization") != f"Bearer {token}":
            self._reply(401, {"error": "unauthorized"})
            return
        if latency:
            state.stop.wait(min(latency, MAX_LATENCY))
        if not isinstance(body, dict) or not all(
            isinstance(body.get(name), str) and body.get(name) for name in ("phone", "message", "idempotency_key")
        ):
            self._reply(400, {"error": "phone, message and idempotency_key are required"})
            return
        with state.lock:
            senders = state.senders
        if body.get("sender_id") is not None and senders is not None and body["sender_id"] not in senders:
            self._reply(404, {"error": "unknown sender"})
            return
        phone, key = body["phone"], body["idempotency_key"]
        with state.lock:
            n = state.counted_requests
            state.counted_requests += 1
            # Deterministic: request n fails when the running total of fail_fraction crosses an integer, so
            # exactly floor(N * fraction) of the first N requests fail, spread evenly.
            if math.floor((n + 1) * state.fail_fraction) > math.floor(n * state.fail_fraction):
                state.failed_503 += 1
                fail = True
            else:
                fail = False
            reject = state.reject_status if (not state.reject_phones or phone in state.reject_phones) else None
            if not fail and reject is not None:
                state.rejected += 1
            existing = state.ids_by_key.get(key)
            no_id = state.no_id
            if not fail and reject is None and existing is None:
                message_id = state.new_id("gw-")
                state.ids_by_key[key] = message_id
                state.messages.append(
                    {
                        "kind": "gateway",
                        "id": message_id,
                        "phone": phone,
                        "message": body["message"],
                        "idempotency_key": key,
                        "sender_id": body.get("sender_id"),
                        "received_at": datetime.now(UTC).isoformat(),
                    }
                )
            elif not fail and reject is None:
                state.duplicates += 1
        if fail:
            self._reply(503, {"error": "temporarily unavailable"})
        elif reject is not None:
            self._reply(reject, {"error": "rejected"})
        elif no_id:
            self._reply(200, {"status": "queued"})
        elif existing is not None:
            self._reply(200, {"id": existing, "duplicate": True})
        else:
            self._reply(200, {"id": message_id})

    # --- the Cloud API ---

    def _cloud(self, gateway: FakeGateway, phone_number_id: str, body: Any, *, version: str | None) -> None:
        state = gateway.state
        with state.lock:
            state.cloud_requests += 1
            down, latency, token, senders = state.down, state.latency, state.cloud_token, state.cloud_senders
        if not phone_number_id.isdigit() or (senders is not None and phone_number_id not in senders):
            error = _meta_error(100, f"Object with ID '{phone_number_id}' does not exist")
            error["error"]["error_subcode"] = 33
            self._reply(400, error)
            return
        if down is not None:
            self._reply(503, _meta_error(2, "Service temporarily unavailable"))
            return
        if token and self.headers.get("Authorization") != f"Bearer {token}":
            self._reply(401, _meta_error(190, "Error validating access token: Session has expired"))
            return
        if latency:
            state.stop.wait(min(latency, MAX_LATENCY))
        problem = _template_problem(body)
        if problem:
            self._reply(400, _meta_error(100, problem))
            return
        template = body["template"]
        parameters = [p.get("text") for p in template.get("components", [{}])[0].get("parameters", [])]
        to = str(body["to"])
        with state.lock:
            expected = None if state.cloud_templates is None else state.cloud_templates.get(template["name"], -1)
            failure = state.cloud_fail_phones.get(to) or (
                state.cloud_fail_next.popleft() if state.cloud_fail_next else None
            )
            if failure is None and expected == -1:
                failure = {"code": 132001, "status": 404, "message": "Template name does not exist in the translation"}
            elif failure is None and expected is not None and expected != len(parameters):
                failure = {"code": 132000, "status": 400, "message": "Number of parameters does not match"}
            if failure is not None:
                state.cloud_errors += 1
            else:
                message_id = state.new_id("wamid.FAKE")
                state.messages.append(
                    {
                        "kind": "cloud_api",
                        "id": message_id,
                        "phone": to,
                        "phone_number_id": phone_number_id,
                        "version": version,
                        "template": template["name"],
                        "language": template["language"]["code"],
                        "parameters": parameters,
                        "idempotency_key": body.get("biz_opaque_callback_data"),
                        "received_at": datetime.now(UTC).isoformat(),
                    }
                )
        if failure is not None:
            self._reply(int(failure.get("status", 400)), _meta_error(int(failure["code"]), failure.get("message", "")))
            return
        self._reply(
            200,
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": to.lstrip("+")}],
                "messages": [{"id": message_id, "message_status": "accepted"}],
            },
        )


def _meta_error(code: int, message: str) -> dict[str, Any]:
    return {
        "error": {
            "message": f"(#{code}) {message}",
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": message},
            "fbtrace_id": "AFakeTraceId",
        }
    }


def _template_problem(body: Any) -> str | None:
    if not isinstance(body, dict) or body.get("messaging_product") != "whatsapp":
        return "messaging_product must be whatsapp"
    if not isinstance(body.get("to"), str) or not body["to"]:
        return "to is required"
    if body.get("type") != "template":
        return "only template messages may start a conversation"
    template = body.get("template")
    if not isinstance(template, dict) or not template.get("name"):
        return "template.name is required"
    if not isinstance(template.get("language"), dict) or not template["language"].get("code"):
        return "template.language.code is required"
    for component in template.get("components", []):
        for parameter in component.get("parameters", []):
            text = parameter.get("text")
            if not isinstance(text, str) or not text.strip():
                return "template parameters must be non-empty text"
            if "\n" in text or "\t" in text or "     " in text:
                return "Param text cannot have new-line/tab characters or more than 4 consecutive spaces"
    return None


class FakeGateway:
    """The fake gateway and Cloud API on 127.0.0.1; a context manager that stops its servers on exit."""

    def __init__(
        self,
        *,
        port: int = 0,
        control_port: int | None = None,
        lifetime: float = 600.0,
        **config: Any,
    ) -> None:
        self.state = _State()
        self._lifetime = lifetime
        self._port = port
        self._control_port = control_port
        self._main: _Server | None = None
        self._control: _Server | None = None
        self._servers_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._started = False
        self.configure(**config)

    # --- lifecycle ---

    def start(self) -> Self:
        self._main = self._serve(self._port, control_only=False)
        self._port = self._main.server_address[1]
        if self._control_port is not None:
            self._control = self._serve(self._control_port, control_only=True)
        self._started = True
        if self.state.down == "refuse":
            self._apply_refuse(True)
        watchdog = threading.Thread(target=self._watchdog, name="fake-gateway-watchdog", daemon=True)
        watchdog.start()
        return self

    def _serve(self, port: int, *, control_only: bool) -> _Server:
        server = _Server(("127.0.0.1", port), self, control_only=control_only)
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-gateway", daemon=True
        )
        thread.start()
        self._threads.append(thread)
        return server

    def _watchdog(self) -> None:
        if not self.state.stop.wait(self._lifetime):
            self.stop()

    def stop(self) -> None:
        """Stop every server; idempotent."""
        self.state.stop.set()
        with self._servers_lock:
            servers = [s for s in (self._main, self._control) if s is not None]
            self._main = self._control = None
        for server in servers:
            _close(server)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The gateway's base URL (WHATSAPP_GATEWAY_URL), also the Cloud API base URL."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def control_url(self) -> str | None:
        return f"http://127.0.0.1:{self._control.server_address[1]}" if self._control else None

    # --- behaviour ---

    def configure(self, **changes: Any) -> None:
        """Change behaviour: fail_fraction (0-1, deterministic 503s), down (None, "503" or "refuse"), latency
        (seconds), reject_status (e.g. 400) with reject_phones (empty: everyone), token (required bearer on
        /send), no_id (answer 200 without an id), cloud_token, cloud_templates ({name: parameter count}),
        cloud_fail_next (list of {"code", "status", "message"} for the next Cloud API requests),
        cloud_fail_phones ({phone: {"code", "status", "message"}}), senders (the gateway's sessions: another
        sender_id gets 404) and cloud_senders (the phone number ids: another gets Meta's code 100/33); None: any."""
        unknown = set(changes) - _CONFIG_KEYS
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")
        state = self.state
        refuse_changed = None
        with state.lock:
            if "fail_fraction" in changes:
                fraction = float(changes["fail_fraction"])
                if not 0 <= fraction <= 1:
                    raise ValueError("fail_fraction must be between 0 and 1")
                state.fail_fraction = fraction
                state.counted_requests = 0
            if "down" in changes:
                down = changes["down"]
                if down not in (None, "503", "refuse"):
                    raise ValueError("down must be None, '503' or 'refuse'")
                refuse_changed = (state.down == "refuse") != (down == "refuse")
                state.down = down
            if "latency" in changes:
                state.latency = max(0.0, min(float(changes["latency"]), MAX_LATENCY))
            if "reject_status" in changes:
                state.reject_status = None if changes["reject_status"] is None else int(changes["reject_status"])
            if "reject_phones" in changes:
                state.reject_phones = set(changes["reject_phones"] or ())
            if "token" in changes:
                state.token = changes["token"]
            if "no_id" in changes:
                state.no_id = bool(changes["no_id"])
            if "cloud_token" in changes:
                state.cloud_token = changes["cloud_token"]
            if "cloud_templates" in changes:
                templates = changes["cloud_templates"]
                state.cloud_templates = None if templates is None else {str(k): int(v) for k, v in templates.items()}
            if "cloud_fail_next" in changes:
                state.cloud_fail_next = deque(dict(item) for item in changes["cloud_fail_next"] or ())
            if "cloud_fail_phones" in changes:
                state.cloud_fail_phones = {str(k): dict(v) for k, v in (changes["cloud_fail_phones"] or {}).items()}
            if "senders" in changes:
                state.senders = None if changes["senders"] is None else set(changes["senders"])
            if "cloud_senders" in changes:
                state.cloud_senders = None if changes["cloud_senders"] is None else set(changes["cloud_senders"])
        if refuse_changed and self._started:
            self._apply_refuse(state.down == "refuse")

    def _apply_refuse(self, refuse: bool) -> None:
        """Close the listening socket (and open connections) so that connections are refused, or reopen it."""
        with self._servers_lock:
            if self.state.stop.is_set():
                return
            if refuse and self._main is not None:
                server, self._main = self._main, None
            elif not refuse and self._main is None:
                self._main = self._serve(self._port, control_only=False)
                return
            else:
                return
        _close(server)

    def reset(self) -> None:
        """Forget received messages and counters, and restore the default behaviour."""
        self.configure(
            fail_fraction=0.0,
            down=None,
            latency=0.0,
            reject_status=None,
            reject_phones=(),
            no_id=False,
            cloud_templates=None,
            cloud_fail_next=(),
            cloud_fail_phones={},
            senders=None,
            cloud_senders=None,
        )
        with self.state.lock:
            state = self.state
            state.messages.clear()
            state.ids_by_key.clear()
            state.send_requests = state.counted_requests = state.failed_503 = state.rejected = 0
            state.duplicates = state.cloud_requests = state.cloud_errors = 0

    # --- what was received ---

    def messages(self) -> list[dict[str, Any]]:
        """Every accepted message (gateway and Cloud API), in arrival order, once per idempotency key."""
        with self.state.lock:
            return [dict(m) for m in self.state.messages]

    def stats(self) -> dict[str, Any]:
        state = self.state
        with state.lock:
            return {
                "accepted": len(state.messages),
                "send_requests": state.send_requests,
                "in_flight": state.in_flight,
                "failed_503": state.failed_503,
                "rejected": state.rejected,
                "duplicates": state.duplicates,
                "cloud_requests": state.cloud_requests,
                "cloud_errors": state.cloud_errors,
                "down": state.down,
            }


def _close(server: _Server) -> None:
    server.shutdown()
    server.server_close()
    # Drop kept-alive connections too, so that "down" means down for clients holding a pooled connection.
    with server.connections_lock:
        connections = list(server.connections)
    for connection in connections:
        with contextlib.suppress(OSError):
            connection.shutdown(socket.SHUT_RDWR)


# --- running it as a separate process -----------------------------------------------------------------------------


class FakeGatewayProcess:
    """`python -m tests.fake_gateway` in a subprocess, with the same `configure`, `messages` and `stats`."""

    def __init__(self, *, lifetime: float = 600.0, startup_timeout: float = 20.0, **config: Any) -> None:
        self._lifetime = lifetime
        self._startup_timeout = startup_timeout
        self._config = config
        self._process: subprocess.Popen[str] | None = None
        self.url = ""
        self.control_url = ""
        self._http = httpx.Client(timeout=10.0, trust_env=False)

    def start(self) -> Self:
        command = [
            sys.executable,
            "-m",
            "tests.fake_gateway",
            "--port",
            "0",
            "--control-port",
            "0",
            "--lifetime",
            str(self._lifetime),
        ]
        self._process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        ready, _, _ = select.select([self._process.stdout], [], [], self._startup_timeout)
        line = self._process.stdout.readline() if ready else ""
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"fake gateway did not start: {line!r}")
        urls = json.loads(line.removeprefix("READY "))
        self.url, self.control_url = urls["url"], urls["control_url"]
        if self._config:
            self.configure(**self._config)
        return self

    def configure(self, **changes: Any) -> dict[str, Any]:
        response = self._http.post(f"{self.control_url}/control", json=changes)
        response.raise_for_status()
        return dict(response.json())

    def reset(self) -> None:
        self._http.post(f"{self.control_url}/reset").raise_for_status()

    def messages(self) -> list[dict[str, Any]]:
        response = self._http.get(f"{self.control_url}/messages")
        response.raise_for_status()
        return list(response.json()["messages"])

    def stats(self) -> dict[str, Any]:
        response = self._http.get(f"{self.control_url}/stats")
        response.raise_for_status()
        return dict(response.json())

    def stop(self) -> None:
        self._http.close()
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        if self._process.stdout:
            self._process.stdout.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fake_gateway", description="A fake WhatsApp gateway and Cloud API on 127.0.0.1."
    )
    parser.add_argument("--port", type=int, default=0, help="gateway port (0: any free port)")
    parser.add_argument("--control-port", type=int, default=0, help="control port that stays up while 'down'")
    parser.add_argument("--lifetime", type=float, default=600.0, help="stop after this many seconds")
    parser.add_argument("--token", default=None, help="bearer token required on POST /send")
    parser.add_argument("--cloud-token", default=None, help="bearer token required by the Cloud API")
    parser.add_argument("--fail-fraction", type=float, default=0.0, help="fraction of /send answered 503")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    gateway = FakeGateway(
        port=args.port,
        control_port=args.control_port,
        lifetime=args.lifetime,
        token=args.token,
        cloud_token=args.cloud_token,
        fail_fraction=args.fail_fraction,
    ).start()
    signal.signal(signal.SIGTERM, lambda *_: gateway.state.stop.set())
    signal.signal(signal.SIGINT, lambda *_: gateway.state.stop.set())
    print("READY " + json.dumps({"url": gateway.url, "control_url": gateway.control_url}), flush=True)
    parent = os.getppid()
    # Bounded: the lifetime watchdog sets `stop`; a dead parent (re-parented to another pid) stops it sooner.
    while not gateway.state.stop.wait(0.5):
        if os.getppid() != parent:
            break
    gateway.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
