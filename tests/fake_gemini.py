"""A fake Gemini API on 127.0.0.1 for the real google-genai client: scripted answers to generateContent.

    with FakeGemini(script=[Reply.status(500), Reply.good()]) as fake:
        settings = load_settings(gemini_api_key="test-key", gemini_base_url=fake.base_url, ...)

Replies in `script` are used one per request, in order; after it runs out every request gets `default`
("good", "500", "hang", ...; see `Reply.mode`). The server records each request, binds port 0 on 127.0.0.1, serves
from a daemon thread, stops when the `with` block ends or after `max_lifetime` seconds at the latest, and a hanging
reply waits at most `hang_seconds` (less when the server stops). Reusable by pipeline tests and benchmarks.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from reactivation.core.settings import Settings, load_settings

_PATH = re.compile(r"^/(?P<version>v1beta|v1)/models/(?P<model>[^/:]+):generateContent$")


@dataclass(frozen=True)
class Reply:
    """One scripted answer."""

    kind: str  # text | good | safety | blocked | empty | status | rate_limited | hang | garbage
    text: str = ""
    status: int = 200
    retry_delay: str | None = None  # RetryInfo's retryDelay, e.g. "0.2s"
    hang_seconds: float = 5.0

    @classmethod
    def good(cls) -> Reply:
        """A valid message for whatever the prompt asks (the client's name, the step's discount)."""
        return cls("good")

    @classmethod
    def say(cls, text: str) -> Reply:
        return cls("text", text=text)

    @classmethod
    def safety(cls) -> Reply:
        """A candidate with no text, finished for SAFETY."""
        return cls("safety")

    @classmethod
    def blocked(cls) -> Reply:
        """The prompt itself blocked: no candidates, promptFeedback.blockReason."""
        return cls("blocked")

    @classmethod
    def empty(cls) -> Reply:
        return cls("empty")

    @classmethod
    def error(cls, status: int) -> Reply:
        return cls("status", status=status)

    @classmethod
    def rate_limited(cls, retry_delay: str | None = "0.2s") -> Reply:
        return cls("rate_limited", status=429, retry_delay=retry_delay)

    @classmethod
    def hang(cls, seconds: float = 5.0) -> Reply:
        """Say nothing for `seconds` (past the client's timeout), then answer a good message."""
        return cls("hang", hang_seconds=seconds)

    @classmethod
    def mode(cls, name: str) -> Reply:
        """A default reply by name: "good", "500", "503", "429", "hang", "safety", "empty"."""
        if name.isdigit():
            return cls.rate_limited() if name == "429" else cls.error(int(name))
        return {"good": cls.good, "hang": cls.hang, "safety": cls.safety, "empty": cls.empty}[name]()


@dataclass
class Recorded:
    path: str
    model: str
    headers: dict[str, str]
    body: dict[str, Any]
    # When the request arrived (time.time()): benchmarks check how many fall in any window of the rate limit.
    received_at: float = field(default_factory=time.time)

    @property
    def prompt(self) -> str:
        """Every text the client sent: the system instruction and the contents."""
        texts: list[str] = []
        system = self.body.get("systemInstruction") or self.body.get("system_instruction") or {}
        for part in system.get("parts", []):
            texts.append(part.get("text", ""))
        for content in self.body.get("contents", []):
            for part in content.get("parts", []):
                texts.append(part.get("text", ""))
        return "\n".join(texts)


@dataclass
class FakeGemini:
    script: Iterable[Reply] = ()
    default: Reply = field(default_factory=Reply.good)
    max_lifetime: float = 60.0
    # A default by name instead ("good", "500", "hang", ...): `FakeGemini(mode="500")` fails every request.
    mode: str | None = None
    requests: list[Recorded] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.mode is not None:
            self.default = Reply.mode(self.mode)
        self._queue: deque[Reply] = deque(self.script)
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._watchdog = threading.Timer(self.max_lifetime, self.stop)
        self._watchdog.daemon = True

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    def start(self) -> FakeGemini:
        self._thread.start()
        self._watchdog.start()
        return self

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()  # releases hanging replies
        self._watchdog.cancel()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeGemini:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def push(self, *replies: Reply) -> None:
        """Script more replies (used before the default)."""
        with self._lock:
            self._queue.extend(replies)

    def set_default(self, reply: Reply) -> None:
        with self._lock:
            self.default = reply

    def _next(self, recorded: Recorded) -> Reply:
        with self._lock:
            self.requests.append(recorded)
            return self._queue.popleft() if self._queue else self.default

    def wait_released(self, seconds: float) -> None:
        self._stopped.wait(seconds)

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def wait_stopped(self, seconds: float) -> bool:
        """Wait (at most `seconds`) for the server to stop; True when it has."""
        return self._stopped.wait(seconds)


def good_message(prompt: str) -> str:
    """A message that passes validation for what the prompt asks: the name it gives and the discount it names."""
    name = re.search(r"Имя клиента: ([^\n.,]+)", prompt)
    discount = re.search(r"Скидка: (\d+)\s*%", prompt)
    greeting = f"{name.group(1).strip()}, здравствуйте!" if name else "Здравствуйте!"
    offer = f" Для вас действует скидка {discount.group(1)}% на следующий визит." if discount else ""
    return f"{greeting} Давно вас у нас не было, будем рады снова видеть.{offer} Подобрать вам удобный день?"


def _candidate_response(text: str, model: str) -> dict[str, Any]:
    return {
        "candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 120, "candidatesTokenCount": 40, "totalTokenCount": 160},
        "modelVersion": model,
    }


def _handler_for(fake: FakeGemini) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(min(length, 1_000_000)) if length else b""
            match = _PATH.match(self.path.split("?", 1)[0])
            if not match:
                self._json(404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}})
                return
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                self._json(400, {"error": {"code": 400, "message": "bad json", "status": "INVALID_ARGUMENT"}})
                return
            recorded = Recorded(
                path=self.path, model=match["model"], headers={k.lower(): v for k, v in self.headers.items()}, body=body
            )
            reply = fake._next(recorded)
            self._answer(reply, recorded)

        def _answer(self, reply: Reply, recorded: Recorded) -> None:
            model = recorded.model
            if reply.kind == "hang":
                fake.wait_released(reply.hang_seconds)
                if fake.stopped:
                    return
                self._json(200, _candidate_response(good_message(recorded.prompt), model))
            elif reply.kind == "good":
                self._json(200, _candidate_response(good_message(recorded.prompt), model))
            elif reply.kind == "text":
                self._json(200, _candidate_response(reply.text, model))
            elif reply.kind == "safety":
                self._json(
                    200,
                    {
                        "candidates": [
                            {
                                "finishReason": "SAFETY",
                                "index": 0,
                                "safetyRatings": [
                                    {"category": "HARM_CATEGORY_HARASSMENT", "probability": "HIGH", "blocked": True}
                                ],
                            }
                        ],
                        "modelVersion": model,
                    },
                )
            elif reply.kind == "blocked":
                self._json(200, {"promptFeedback": {"blockReason": "SAFETY"}, "modelVersion": model})
            elif reply.kind == "empty":
                self._json(200, {"candidates": [], "modelVersion": model})
            elif reply.kind == "rate_limited":
                details: list[dict[str, Any]] = [
                    {
                        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                        "violations": [{"quotaMetric": "generate_content_free_tier_requests"}],
                    }
                ]
                if reply.retry_delay is not None:
                    retry_info = "type.googleapis.com/google.rpc.RetryInfo"
                    details.append({"@type": retry_info, "retryDelay": reply.retry_delay})
                error = {"code": 429, "message": "quota exceeded", "status": "RESOURCE_EXHAUSTED", "details": details}
                self._json(429, {"error": error})
            elif reply.kind == "garbage":
                self._raw(200, b"<html>not json</html>", "text/html")
            else:
                status = reply.status
                self._json(status, {"error": {"code": status, "message": "scripted failure", "status": "INTERNAL"}})

        def _json(self, status: int, payload: dict[str, Any]) -> None:
            self._raw(status, json.dumps(payload, ensure_ascii=False).encode(), "application/json; charset=utf-8")

        def _raw(self, status: int, data: bytes, content_type: str) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                return  # the client gave up (a timeout); nothing to answer

    return Handler


TEST_API_KEY = "test-gemini-key-DO-NOT-LOG-7f3a"


def settings_for(fake: FakeGemini, base: Settings | None = None, **overrides: Any) -> Settings:
    """Settings whose Gemini client talks to the fake: a test key, its base URL, small timeouts unless overridden."""
    values: dict[str, Any] = {
        "gemini_api_key": TEST_API_KEY,
        "gemini_base_url": fake.base_url,
        "gemini_timeout_seconds": 2.0,
        "gemini_budget_seconds": 30.0,
        "gemini_max_attempts": 4,
    }
    values.update(overrides)
    if base is not None:
        return load_settings(**{**base.model_dump(), **values, "_env_file": None})
    return load_settings(**values, _env_file=None)
