"""A fake Gemini API on 127.0.0.1 for the real google-genai client: scripted answers to generateContent.

    with FakeGemini(script=[Reply.status(500), Reply.good()]) as fake:
        settings = load_settings(gemini_api_key="test-key", gemini_base_url=fake.base_url, ...)

Replies in `script` are used one per request, in order; after it runs out every request gets `default`
("good", "500", "hang", ...; see `Reply.mode`). The server records each request, binds port 0 on 127.0.0.1, serves
from a daemon thread, stops when the `with` block ends or after `max_lifetime` seconds at the latest, and a hanging
reply waits at most `hang_seconds` (less when the server stops). Reusable by pipeline tests and benchmarks.

Batches: a request that asks for JSON with an array schema is answered item by item, from the numbered item lines of
its prompt (`3. Имя: Мария. Последняя услуга: … Тип: offer.`): a varied valid message per item, or, scripted with
`Reply.batch({2: "too_long", 5: "duplicate"})`, a bad one (see ITEM_MODES). Usage is reported as the real API does:
prompt and output tokens from the texts' lengths, thinking tokens from the request's thinking level (THINKING), and an
answer longer than maxOutputTokens (thinking included) is cut there with finishReason MAX_TOKENS. 429s carry
QuotaFailure and RetryInfo details of each class (`Reply.quota("day")`), refusals their google.rpc status.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from reactivation.core.settings import Settings, load_settings

_PATH = re.compile(r"^/(?P<version>v1beta|v1)/models/(?P<model>[^/:]+):generateContent$")
_ITEM = re.compile(r"^(?P<n>\d+)\. Имя: (?P<name>[^.]+)\. Последняя услуга: .*\. Тип: (?P<type>\w+)\.$", re.MULTILINE)
_DISCOUNTS = {"gentle": 0, "offer": 10, "win_back": 20}

# The quotaId of each class, as the Gemini API names its quotas.
QUOTA_IDS = {
    "minute": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
    "tokens_minute": "GenerateContentInputTokensPerModelPerMinute-FreeTier",
    "day": "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
    "unknown": None,  # a spend cap: a QuotaFailure that names no per-minute or per-day quota
}
# Thinking tokens the fake reports: a fixed part and a part per item, by level; without a level, the model's default.
THINKING = {"MINIMAL": (0, 0), "LOW": (24, 6), "MEDIUM": (180, 45), "HIGH": (600, 160)}
DEFAULT_LEVEL = "MEDIUM"
# Russian text is about three characters per token.
CHARS_PER_TOKEN = 3
ITEM_MODES = ("good", "too_long", "english", "placeholder", "empty", "duplicate", "missing", "other_name")


@dataclass(frozen=True)
class Reply:
    """One scripted answer."""

    kind: str  # text | good | batch | truncated | safety | blocked | empty | status | quota | hang | garbage
    text: str = ""
    status: int = 200
    rpc_status: str = "INTERNAL"
    retry_delay: str | None = None  # RetryInfo's retryDelay, e.g. "0.2s"
    quota_class: str = "minute"
    items: Mapping[int, str] = field(default_factory=dict)  # position -> ITEM_MODES entry (batch replies)
    hang_seconds: float = 5.0

    @classmethod
    def good(cls) -> Reply:
        """Valid messages for whatever the prompt asks (each item's name and discount), each worded differently."""
        return cls("good")

    @classmethod
    def say(cls, text: str) -> Reply:
        """This text: as the answer, or as every item of a batch."""
        return cls("text", text=text)

    @classmethod
    def batch(cls, items: Mapping[int, str]) -> Reply:
        """A batch answer with these items (1-based positions) bad in the named way, the others good."""
        unknown = set(items.values()) - set(ITEM_MODES)
        if unknown:
            raise ValueError(f"unknown item modes {unknown}; expected {ITEM_MODES}")
        return cls("batch", items=dict(items))

    @classmethod
    def truncated(cls) -> Reply:
        """Good items cut half-way by the output cap: finishReason MAX_TOKENS."""
        return cls("truncated")

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
    def error(cls, status: int, rpc_status: str = "INTERNAL") -> Reply:
        """An error answer: 400 FAILED_PRECONDITION (region), 403 PERMISSION_DENIED, 404 NOT_FOUND, 500 ..."""
        return cls("status", status=status, rpc_status=rpc_status)

    @classmethod
    def quota(cls, kind: str = "minute", retry_delay: str | None = "0.2s") -> Reply:
        """A 429 whose QuotaFailure names a quota of this class (QUOTA_IDS), with RetryInfo when `retry_delay`."""
        if kind not in QUOTA_IDS:
            raise ValueError(f"unknown quota class {kind!r}; expected {sorted(QUOTA_IDS)}")
        return cls("quota", status=429, quota_class=kind, retry_delay=retry_delay)

    @classmethod
    def rate_limited(cls, retry_delay: str | None = "0.2s") -> Reply:
        """A per-minute 429 (the usual one)."""
        return cls.quota("minute", retry_delay)

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


@dataclass(frozen=True)
class Item:
    """One numbered item of a batch prompt."""

    n: int
    name: str | None
    message_type: str


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

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.body.get("generationConfig") or {})

    @property
    def thinking_level(self) -> str | None:
        thinking = self.config.get("thinkingConfig") or {}
        level = thinking.get("thinkingLevel") or thinking.get("thinking_level")
        return str(level) if level else None

    @property
    def max_output_tokens(self) -> int | None:
        value = self.config.get("maxOutputTokens")
        return int(value) if value is not None else None

    @property
    def is_batch(self) -> bool:
        """JSON asked for with an array schema."""
        schema = self.config.get("responseSchema") or self.config.get("responseJsonSchema") or {}
        return self.config.get("responseMimeType") == "application/json" and str(schema.get("type")).upper() == "ARRAY"

    @property
    def items(self) -> list[Item]:
        """The numbered items of a batch prompt, in order."""
        return [
            Item(int(m["n"]), None if m["name"] == "неизвестно" else m["name"], m["type"])
            for m in _ITEM.finditer(self.prompt)
        ]


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
        self._items_answered = 0
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

    def _next(self, recorded: Recorded) -> tuple[Reply, int]:
        """The reply for this request, and where its items' wording starts (items answered before it)."""
        with self._lock:
            self.requests.append(recorded)
            first = self._items_answered
            self._items_answered += len(recorded.items)
            return (self._queue.popleft() if self._queue else self.default), first

    def wait_released(self, seconds: float) -> None:
        self._stopped.wait(seconds)

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def wait_stopped(self, seconds: float) -> bool:
        """Wait (at most `seconds`) for the server to stop; True when it has."""
        return self._stopped.wait(seconds)


# --- Messages ---------------------------------------------------------------------------------------------------

_GREETINGS = ("{name}, здравствуйте!", "{name}, добрый день!", "Доброго дня, {name}!", "{name}, приветствуем вас!")
_GREETINGS_ANONYMOUS = ("Здравствуйте!", "Добрый день!", "Доброго дня!", "Приветствуем вас!")
_BODIES = (
    "Давно вас у нас не было.",
    "Вы давно к нам не заглядывали.",
    "Давно не виделись.",
    "Кажется, пора снова к нам.",
    "Будем рады снова вас видеть.",
    "Самое время позаботиться о себе.",
)
_OFFERS = (" Для вас скидка {d}% на следующий визит.", " Дарим вам скидку {d}% на визит.")
_CLOSINGS = ("Подобрать вам удобный день?", "Записать вас?", "Когда вам удобно прийти?", "Найти для вас время?")


def good_item(index: int, name: str | None, message_type: str) -> str:
    """A valid message for one item, worded by its index (0..95 give different wordings): greeting, body, offer."""
    greetings = _GREETINGS if name else _GREETINGS_ANONYMOUS
    greeting = greetings[index % 4].format(name=name)
    body = _BODIES[(index // 4) % len(_BODIES)]
    closing = _CLOSINGS[(index // 24) % len(_CLOSINGS)]
    discount = _DISCOUNTS.get(message_type, 0)
    offer = _OFFERS[index % 2].format(d=discount) if discount else ""
    return f"{greeting} {body}{offer} {closing}"


def good_message(prompt: str) -> str:
    """A valid message for a plain-text prompt (one message, nothing in it to vary by)."""
    discount = re.search(r"(?:Скидка|скидка)\D{0,3}(\d+)\s*%", prompt)
    message_type = {"10": "offer", "20": "win_back"}.get(discount.group(1) if discount else "", "gentle")
    return good_item(0, None, message_type)


def _bad_item(mode: str, item: Item, items: list[Item]) -> str | None:
    """The text of a bad item (None: left out of the answer). Each is valid but for its one defect."""
    name = item.name or "Мария"
    other = next((i.name for i in items if i.name and i.name != item.name), "Светлана")
    discount = _DISCOUNTS.get(item.message_type, 0)
    offer = f" Для вас скидка {discount}%." if discount else ""
    return {
        "too_long": f"{name}, " + "очень " * 60 + f"ждём вас снова.{offer} Записать вас?",
        "english": f"{name}, we would love to see you again soon. Shall we book you in?",
        "placeholder": f"{name}, [название салона] ждёт вас снова!{offer} Записать вас?",
        "empty": "",
        # the wording the first item of a fresh fake gets (a good first item of the same type: the same text, names
        # aside)
        "duplicate": good_item(0, item.name, item.message_type),
        "missing": None,
        "other_name": f"{name}, здравствуйте! {other} тоже давно у нас не была.{offer} Записать вас?",
    }[mode]


def batch_answer(recorded: Recorded, reply: Reply, *, first: int = 0) -> list[dict[str, Any]]:
    """The array a batch request gets: each item's message (good, scripted bad, or the reply's one text). Good items
    are worded by `first` + their index, so that consecutive answers (a batch, then its retries) differ."""
    items = recorded.items
    answer = []
    for index, item in enumerate(items):
        mode = reply.items.get(item.n, "good")
        if reply.kind == "text":
            text: str | None = reply.text
        elif mode == "good":
            text = good_item(first + index, item.name, item.message_type)
        else:
            text = _bad_item(mode, item, items)
        if text is not None:
            answer.append({"n": item.n, "text": text})
    return answer


# --- Answers ------------------------------------------------------------------------------------------------------


def _tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _thinking_tokens(recorded: Recorded) -> int:
    level = recorded.thinking_level or DEFAULT_LEVEL
    fixed, per_item = THINKING.get(level.upper(), THINKING[DEFAULT_LEVEL])
    return fixed + per_item * max(1, len(recorded.items))


def candidate_response(text: str, recorded: Recorded, *, finish: str = "STOP") -> dict[str, Any]:
    """A 200 answer with `text`, its usage, and the output cap applied (thinking counts against it)."""
    thinking = _thinking_tokens(recorded)
    cap = recorded.max_output_tokens
    if cap is not None and thinking + _tokens(text) > cap:
        text = text[: max(0, cap - thinking) * CHARS_PER_TOKEN]
        finish = "MAX_TOKENS"
    usage = {"promptTokenCount": _tokens(recorded.prompt), "candidatesTokenCount": _tokens(text)}
    if thinking:
        usage["thoughtsTokenCount"] = thinking
    usage["totalTokenCount"] = sum(usage.values())
    return {
        "candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": finish, "index": 0}],
        "usageMetadata": usage,
        "modelVersion": recorded.model,
    }


def _text_answer(recorded: Recorded, reply: Reply, *, first: int = 0) -> str:
    """What a good, text or batch reply says: a JSON array to a batch request, plain text otherwise."""
    if recorded.is_batch:
        return json.dumps(batch_answer(recorded, reply, first=first), ensure_ascii=False)
    return reply.text if reply.kind == "text" else good_message(recorded.prompt)


def _quota_error(reply: Reply) -> dict[str, Any]:
    quota_id = QUOTA_IDS[reply.quota_class]
    violation: dict[str, Any] = {"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests"}
    if quota_id is not None:
        violation |= {"quotaId": quota_id, "quotaDimensions": {"location": "global", "model": "gemini-3.8-flash"}}
    else:
        violation["description"] = "The project's spend cap is reached."
    details: list[dict[str, Any]] = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]}
    ]
    if reply.retry_delay is not None:
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": reply.retry_delay})
    return {"code": 429, "message": "quota exceeded", "status": "RESOURCE_EXHAUSTED", "details": details}


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
            reply, first = fake._next(recorded)
            self._answer(reply, recorded, first)

        def _answer(self, reply: Reply, recorded: Recorded, first: int) -> None:
            if reply.kind == "hang":
                fake.wait_released(reply.hang_seconds)
                if fake.stopped:
                    return
                self._json(200, candidate_response(_text_answer(recorded, Reply.good(), first=first), recorded))
            elif reply.kind in ("good", "text", "batch"):
                self._json(200, candidate_response(_text_answer(recorded, reply, first=first), recorded))
            elif reply.kind == "truncated":
                text = _text_answer(recorded, Reply.good(), first=first)
                self._json(200, candidate_response(text[: len(text) // 2], recorded, finish="MAX_TOKENS"))
            elif reply.kind == "safety":
                candidate = {"finishReason": "SAFETY", "index": 0, "safetyRatings": [{"blocked": True}]}
                self._json(200, {"candidates": [candidate], "modelVersion": recorded.model})
            elif reply.kind == "blocked":
                self._json(200, {"promptFeedback": {"blockReason": "SAFETY"}, "modelVersion": recorded.model})
            elif reply.kind == "empty":
                self._json(200, {"candidates": [], "modelVersion": recorded.model})
            elif reply.kind == "quota":
                self._json(429, {"error": _quota_error(reply)})
            elif reply.kind == "garbage":
                self._raw(200, b"<html>not json</html>", "text/html")
            else:
                status = reply.status
                error = {"code": status, "message": "scripted failure", "status": reply.rpc_status}
                self._json(status, {"error": error})

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
