"""Personal messages from Gemini Flash through the google-genai SDK, retried within a budget and validated.

Only the client's first name and the service title go into the prompt (with the salon's name and the step): under
152-FZ a prompt is personal data leaving Russia, so the phone, the surname and everything else stay home. The
prompt facts are a dataclass with exactly those fields, so nothing else can slip in.

The SDK has no timeout and no retries by default; this module sets a timeout per request and retries itself:
a 429 after the server's RetryInfo delay, 5xx and timeouts with exponential backoff and jitter (tenacity), every
attempt taking a slot from the global limiter, all bounded by GEMINI_MAX_ATTEMPTS and GEMINI_BUDGET_SECONDS per
message. An empty, blocked or rejected answer gets one more try. The caller falls back to a template.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import pydantic
import tenacity
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from reactivation.core.errors import PermanentError, TransientError
from reactivation.core.limiter import Limiter
from reactivation.core.settings import Settings
from reactivation.core.vocabulary import Step
from reactivation.messaging.russian import clean_title
from reactivation.messaging.validation import ValidationResult, validate_message

log = logging.getLogger(__name__)

# Recorded as the history row's variant for Gemini messages, so that prompt changes can be compared.
PROMPT_VERSION = "v2"
# The API version the fake server and the real endpoint both serve; pinned so an SDK upgrade does not move it.
API_VERSION = "v1beta"
# A retry that would leave less than this of the budget for the attempt itself is not worth making.
_MIN_ATTEMPT_SECONDS = 1.0
# Backoff for 5xx and timeouts: 1 s, 2 s, 4 s ... plus up to 1 s of jitter, capped.
_BACKOFF_INITIAL = 1.0
_BACKOFF_MAX = 8.0
_BACKOFF_JITTER = 1.0
# How many answers may be empty, blocked or rejected before the template is used: the first and one more.
_CONTENT_TRIES = 2
_BLOCKED_FINISH = {"SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "RECITATION", "IMAGE_SAFETY"}
_MAX_SALON_IN_PROMPT = 80

# google-genai 3.x sends through httpx2 (httpx when only that is installed); timeouts and connection failures
# surface as their transport exceptions, not as genai's APIError.
_TIMEOUT_ERRORS: tuple[type[BaseException], ...] = tuple(
    importlib.import_module(name).TimeoutException for name in ("httpx2", "httpx") if importlib.util.find_spec(name)
)
_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = tuple(
    importlib.import_module(name).TransportError for name in ("httpx2", "httpx") if importlib.util.find_spec(name)
)

_INSTRUCTIONS = {
    Step.GENTLE: (
        "Тон: лёгкий, дружелюбный, не навязчивый.\n"
        "Длина: до 150 символов.\n"
        "Без скидок и акций. Избегай слов «скучаем» и «ждём» (слишком пафосно)."
    ),
    Step.OFFER: (
        "Тон: дружелюбный, с акцентом на выгоду.\n"
        "Длина: до 200 символов.\n"
        "Скидка: 10% — упомяни её как специальное предложение."
    ),
    Step.WIN_BACK: (
        "Тон: искренний, заботливый, персональный.\n"
        "Длина: до 250 символов.\n"
        "Скидка: 20% — предложи её как знак признательности."
    ),
}

SYSTEM_INSTRUCTION = (
    "Ты администратор салона красоты и пишешь клиентам в WhatsApp. Пишешь по-русски, коротко, тепло и "
    "по-человечески, обращаешься на «вы». Отвечаешь только текстом одного сообщения: без пояснений, вариантов, "
    "кавычек, заголовков и разметки."
)


@dataclass(frozen=True)
class PromptFacts:
    """Everything a prompt may say. Deliberately nothing else: no phone, no surname, no dates, no ids."""

    step: Step
    first_name: str | None
    service_title: str | None
    company_name: str


@dataclass(frozen=True)
class Written:
    """A message Gemini wrote that passed validation."""

    text: str
    model: str
    attempts: int
    repairs: tuple[str, ...] = ()


@dataclass(frozen=True)
class NotWritten:
    """Why Gemini gave no usable message: timeout, server_error, rate_limited, rate_limited_budget, safety,
    empty, rejected:<reasons>, client_error:<status>, connection_error, bad_response."""

    reason: str
    attempts: int


def build_prompt(facts: PromptFacts) -> str:
    """The user turn of the prompt, in Russian, from the seed's instructions per message type."""
    service = clean_title(facts.service_title)
    salon = " ".join(facts.company_name.split())[:_MAX_SALON_IN_PROMPT] or "салон красоты"
    if facts.first_name:
        name_line = f"Имя клиента: {facts.first_name}"
        address = f"- Обратись к клиенту по имени «{facts.first_name}» (в именительном падеже)."
    else:
        name_line = "Имя клиента неизвестно: обратись без имени и не придумывай его."
        address = "- Поздоровайся без имени."
    lines = [
        f"Напиши персональное сообщение в WhatsApp клиенту салона «{salon}»: ему пора снова прийти.",
        "",
        name_line,
        f"Последняя услуга: {service}" if service else "Последняя услуга: не указана",
        f"Тип сообщения: {facts.step.message_type}",
        "",
        _INSTRUCTIONS[facts.step],
        "",
        "Важно:",
        address,
        f"- Назови салон («{salon}»), чтобы клиент знал, кто пишет.",
        "- Не пиши, что клиент «давно» не приходил: с его последнего визита могло пройти и две недели.",
        "- Название услуги склоняй по правилам русского языка и пиши со строчной буквы внутри предложения.",
        "- Будь естественным, как живой человек. Не больше 1–2 эмодзи.",
        "- Не придумывай цены, сроки и даты акций, телефоны, адреса и ссылки; других скидок и подарков не обещай.",
        "- Закончи вопросом о записи.",
        "",
        "Только текст сообщения, без пояснений:",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class Answer:
    """What one request returned: the text, or why there is none ("safety", "empty")."""

    text: str | None
    problem: str | None
    model: str


@dataclass
class _Progress:
    """One message's way through its attempts."""

    slot_taken: bool  # the caller took the first attempt's limiter slot already
    attempts: int = 0
    content_failures: int = 0


class _ContentRetry(TransientError):
    """An empty, blocked or rejected answer: asked once more at once."""


class _GiveUp(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _StopBeforeDeadline(tenacity.stop.stop_base):
    """Stop when the next wait would leave less than `floor` seconds of the message's budget for an attempt."""

    def __init__(self, deadline: float, *, clock: Callable[[], float], floor: float) -> None:
        self.deadline = deadline
        self.clock = clock
        self.floor = floor

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self.clock() + retry_state.upcoming_sleep > self.deadline - self.floor


class GeminiWriter:
    """Writes one client's message with Gemini; built from settings, holding one SDK client per process."""

    def __init__(
        self,
        settings: Settings,
        *,
        client: genai.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not settings.gemini_enabled or settings.gemini_api_key is None:
            raise ValueError("GEMINI_API_KEY is not set; use templates (gemini_writer() returns None)")
        self.model = settings.gemini_model
        self.timeout_seconds = settings.gemini_timeout_seconds
        self.budget_seconds = settings.gemini_budget_seconds
        self.max_attempts = settings.gemini_max_attempts
        self._sleep = sleep
        self._clock = clock
        self._client = client or genai.Client(
            api_key=settings.gemini_api_key.get_secret_value(),
            http_options=types.HttpOptions(
                base_url=settings.gemini_base_url,
                api_version=API_VERSION,
                timeout=int(settings.gemini_timeout_seconds * 1000),
            ),
        )

    def __repr__(self) -> str:  # never the key
        return f"GeminiWriter(model={self.model!r})"

    def write(
        self, facts: PromptFacts, *, limiter: Limiter | None = None, slot_taken: bool = False
    ) -> Written | NotWritten:
        """A validated message, or why there is none; every attempt after a taken slot waits for its own."""
        deadline = self._clock() + self.budget_seconds
        prompt = build_prompt(facts)
        progress = _Progress(slot_taken=slot_taken)

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_attempts)
            | _StopBeforeDeadline(deadline, clock=self._clock, floor=min(_MIN_ATTEMPT_SECONDS, self.timeout_seconds)),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(TransientError),
            sleep=self._sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    self._take_slot(limiter, progress, deadline)
                    progress.attempts += 1
                    timeout = min(self.timeout_seconds, max(deadline - self._clock(), 0.001))
                    answer = self.generate_once(prompt, timeout_seconds=timeout)
                    result = self._judge(answer, facts)
                    if isinstance(result, ValidationResult):
                        return Written(
                            text=result.text, model=answer.model, attempts=progress.attempts, repairs=result.repairs
                        )
                    progress.content_failures += 1
                    if progress.content_failures >= _CONTENT_TRIES:
                        raise _GiveUp(result)
                    raise _ContentRetry(result)
        except TransientError as exc:
            return NotWritten(reason=exc.kind, attempts=progress.attempts)
        except PermanentError as exc:
            log.warning("gemini refused the request", extra={"reason": exc.kind, "model": self.model})
            return NotWritten(reason=exc.kind, attempts=progress.attempts)
        except _GiveUp as exc:
            return NotWritten(reason=exc.reason, attempts=progress.attempts)
        raise AssertionError("tenacity neither returned nor raised")  # pragma: no cover

    def generate_once(
        self, prompt: str, *, timeout_seconds: float, system_instruction: str = SYSTEM_INSTRUCTION
    ) -> Answer:
        """One request; SDK and transport errors come out as TransientError or PermanentError."""
        config = types.GenerateContentConfig(
            system_instruction=system_instruction,
            # No tools are declared; switching automatic function calling off also keeps its log line quiet.
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
            http_options=types.HttpOptions(timeout=max(int(timeout_seconds * 1000), 1)),
        )
        try:
            response = self._client.models.generate_content(model=self.model, contents=prompt, config=config)
        except genai_errors.ClientError as exc:
            if exc.code == 429:
                raise TransientError("rate_limited", str(exc.status), retry_after=_retry_delay(exc)) from None
            if exc.code == 408:
                raise TransientError("timeout", str(exc.status)) from None
            raise PermanentError(f"client_error:{exc.code}", str(exc.status)) from None
        except genai_errors.APIError as exc:  # ServerError and anything else the API answered
            raise TransientError("server_error", f"{exc.code} {exc.status}") from None
        except _TIMEOUT_ERRORS as exc:
            raise TransientError("timeout", type(exc).__name__) from None
        except _TRANSPORT_ERRORS as exc:
            raise TransientError("connection_error", type(exc).__name__) from None
        except (json.JSONDecodeError, genai_errors.UnknownApiResponseError, pydantic.ValidationError) as exc:
            raise TransientError("bad_response", type(exc).__name__) from None
        text, problem = _answer_text(response)
        return Answer(text=text, problem=problem, model=response.model_version or self.model)

    def _judge(self, answer: Answer, facts: PromptFacts) -> ValidationResult | str:
        """The validated message, or the reason the answer is unusable ("safety", "empty", "rejected:...")."""
        if answer.text is None:
            return answer.problem or "empty"
        result = validate_message(
            answer.text, step=facts.step, first_name=facts.first_name, company_name=facts.company_name
        )
        if result.ok:
            return result
        log.info("gemini answer rejected", extra={"reasons": ",".join(result.reasons), "model": self.model})
        return result.reason

    def _take_slot(self, limiter: Limiter | None, progress: _Progress, deadline: float) -> None:
        """Wait for this attempt's limiter slot within the budget, or give up ("rate_limited_budget")."""
        if limiter is None:
            return
        if progress.slot_taken:
            progress.slot_taken = False
            return
        for _ in range(1000):  # bounded; each pass either takes a slot or sleeps toward the deadline
            slot = limiter.acquire()
            if slot.acquired:
                return
            if self._clock() + slot.wait_seconds > deadline - min(_MIN_ATTEMPT_SECONDS, self.timeout_seconds):
                raise _GiveUp("rate_limited_budget")
            self._sleep(slot.wait_seconds)
        raise _GiveUp("rate_limited_budget")

    def _wait(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, _ContentRetry):
            return 0.0
        if isinstance(exc, TransientError) and exc.retry_after is not None:
            return exc.retry_after
        return _exponential_jitter(retry_state)

    def _log_retry(self, retry_state: tenacity.RetryCallState) -> None:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        log.info(
            "gemini attempt failed, retrying",
            extra={
                "reason": getattr(exc, "kind", type(exc).__name__),
                "attempt": retry_state.attempt_number,
                "wait_seconds": round(retry_state.upcoming_sleep, 2),
                "model": self.model,
            },
        )


_exponential_jitter = tenacity.wait_exponential_jitter(
    initial=_BACKOFF_INITIAL, max=_BACKOFF_MAX, jitter=_BACKOFF_JITTER
)


def gemini_writer(settings: Settings) -> GeminiWriter | None:
    """The process's Gemini writer, or None when no API key is configured (templates only)."""
    return GeminiWriter(settings) if settings.gemini_enabled else None


def _answer_text(response: types.GenerateContentResponse) -> tuple[str | None, str | None]:
    """(the candidate's text, None), or (None, "safety") when blocked, or (None, "empty")."""
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        return None, "safety"
    if not response.candidates:
        return None, "empty"
    finish = response.candidates[0].finish_reason
    if finish is not None and str(getattr(finish, "value", finish)) in _BLOCKED_FINISH:
        return None, "safety"
    text = response.text
    return (text, None) if text and text.strip() else (None, "empty")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def _retry_delay(exc: genai_errors.APIError) -> float | None:
    """The server's RetryInfo.retryDelay ("1.5s"), else a Retry-After header, in seconds."""
    details = exc.details if isinstance(exc.details, dict) else {}
    error = details.get("error", details)
    for item in error.get("details", []) if isinstance(error, dict) else []:
        if isinstance(item, dict) and str(item.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = _DURATION.match(str(item.get("retryDelay", "")))
            if match:
                return float(match[1])
    headers = getattr(exc.response, "headers", None)
    retry_after = headers.get("retry-after") if headers is not None else None
    if retry_after and retry_after.strip().isdigit():
        return float(retry_after)
    return None
