"""Gemini Flash through the google-genai SDK: one request, its answer, its token usage, its errors in our terms.

Only the client's first name, the service title and the step go into a prompt (with the salon's name): under 152-FZ
a prompt is personal data leaving Russia, so the phone, the surname and everything else stay home. The prompt facts
are a dataclass with exactly those fields, so nothing else can slip in.

Every request says how much to think (GEMINI_THINKING_LEVEL, checked against the model at start) and caps its answer
(GEMINI_MAX_OUTPUT_TOKENS, thinking included); an answer cut at the cap (finish reason MAX_TOKENS) is `truncated`,
not a message. The SDK has no timeout and no retries by default: this module sets a timeout per request, and the
batch writer (gemini_batch.py) decides about retries.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from dataclasses import dataclass
from typing import Any

import pydantic
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from reactivation.core.errors import TransientError
from reactivation.core.gemini_models import Thinking, thinking_for
from reactivation.core.settings import Settings
from reactivation.core.vocabulary import Step
from reactivation.messaging.gemini_errors import translate

# Recorded as the history row's variant for Gemini messages, so that prompt changes can be compared. v2: batches.
PROMPT_VERSION = "v2"
# The API version the fake server and the real endpoint both serve; pinned so an SDK upgrade does not move it.
API_VERSION = "v1beta"
_BLOCKED_FINISH = {"SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "RECITATION", "IMAGE_SAFETY"}
TRUNCATED = "truncated"

# google-genai 3.x sends through httpx2 (httpx when only that is installed); timeouts and connection failures
# surface as their transport exceptions, not as genai's APIError.
_TIMEOUT_ERRORS: tuple[type[BaseException], ...] = tuple(
    importlib.import_module(name).TimeoutException for name in ("httpx2", "httpx") if importlib.util.find_spec(name)
)
_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = tuple(
    importlib.import_module(name).TransportError for name in ("httpx2", "httpx") if importlib.util.find_spec(name)
)


@dataclass(frozen=True)
class PromptFacts:
    """Everything a prompt may say. Deliberately nothing else: no phone, no surname, no dates, no ids."""

    step: Step
    first_name: str | None
    service_title: str | None
    company_name: str


@dataclass(frozen=True)
class Usage:
    """Tokens one request cost, as usage_metadata reported them (0 when it reported none)."""

    prompt: int = 0
    output: int = 0
    thinking: int = 0

    @property
    def total(self) -> int:
        return self.prompt + self.output + self.thinking


@dataclass(frozen=True)
class Answer:
    """What one request returned: the text, or why there is none ("safety", "empty", "truncated")."""

    text: str | None
    problem: str | None
    model: str
    usage: Usage = Usage()
    finish_reason: str | None = None


class GeminiWriter:
    """One SDK client per process, sending requests with the configured model, thinking and output cap."""

    def __init__(self, settings: Settings, *, client: genai.Client | None = None) -> None:
        if not settings.gemini_enabled or settings.gemini_api_key is None:
            raise ValueError("GEMINI_API_KEY is not set; use templates (gemini_writer() returns None)")
        self.model = settings.gemini_model
        self.thinking: Thinking = thinking_for(settings.gemini_model, settings.gemini_thinking_level)
        self.max_output_tokens = settings.gemini_max_output_tokens
        self.timeout_seconds = settings.gemini_timeout_seconds
        self._client = client or genai.Client(
            api_key=settings.gemini_api_key.get_secret_value(),
            http_options=types.HttpOptions(
                base_url=settings.gemini_base_url,
                api_version=API_VERSION,
                timeout=int(settings.gemini_timeout_seconds * 1000),
            ),
        )

    def __repr__(self) -> str:  # never the key
        return f"GeminiWriter(model={self.model!r}, thinking={self.thinking.label!r})"

    def config(
        self, *, system_instruction: str, timeout_seconds: float, schema: types.Schema | None
    ) -> types.GenerateContentConfig:
        """The request's configuration: thinking, the output cap, JSON with `schema` when given, the timeout."""
        thinking = None
        if self.thinking.level is not None or self.thinking.budget is not None:
            thinking = types.ThinkingConfig(
                thinking_level=types.ThinkingLevel(self.thinking.level) if self.thinking.level else None,
                thinking_budget=self.thinking.budget,
            )
        return types.GenerateContentConfig(
            system_instruction=system_instruction,
            thinking_config=thinking,
            max_output_tokens=self.max_output_tokens,
            response_mime_type="application/json" if schema is not None else None,
            response_schema=schema,
            # No tools are declared; switching automatic function calling off also keeps its log line quiet.
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
            http_options=types.HttpOptions(timeout=max(int(timeout_seconds * 1000), 1)),
        )

    def request(
        self,
        prompt: str,
        *,
        system_instruction: str,
        timeout_seconds: float,
        schema: types.Schema | None = None,
    ) -> Answer:
        """One request; SDK and transport errors come out as the project's errors (see gemini_errors.translate)."""
        config = self.config(system_instruction=system_instruction, timeout_seconds=timeout_seconds, schema=schema)
        try:
            response = self._client.models.generate_content(model=self.model, contents=prompt, config=config)
        except genai_errors.APIError as exc:
            headers = getattr(exc.response, "headers", None)
            raise translate(exc.code, exc.status, exc.details, headers) from None
        except _TIMEOUT_ERRORS as exc:
            raise TransientError("timeout", type(exc).__name__) from None
        except _TRANSPORT_ERRORS as exc:
            raise TransientError("connection_error", type(exc).__name__) from None
        except (json.JSONDecodeError, genai_errors.UnknownApiResponseError, pydantic.ValidationError) as exc:
            raise TransientError("bad_response", type(exc).__name__) from None
        text, problem, finish = _answer_text(response)
        return Answer(
            text=text,
            problem=problem,
            model=response.model_version or self.model,
            usage=_usage(response.usage_metadata),
            finish_reason=finish,
        )

    def generate_once(self, prompt: str, *, timeout_seconds: float, system_instruction: str) -> Answer:
        """One plain-text request (the reply classifier's)."""
        return self.request(prompt, system_instruction=system_instruction, timeout_seconds=timeout_seconds)


def gemini_writer(settings: Settings) -> GeminiWriter | None:
    """The process's Gemini writer, or None when no API key is configured (templates only)."""
    return GeminiWriter(settings) if settings.gemini_enabled else None


def _usage(metadata: Any) -> Usage:
    if metadata is None:
        return Usage()
    return Usage(
        prompt=metadata.prompt_token_count or 0,
        output=metadata.candidates_token_count or 0,
        thinking=metadata.thoughts_token_count or 0,
    )


def _answer_text(response: types.GenerateContentResponse) -> tuple[str | None, str | None, str | None]:
    """(text, None, finish), or (None, "safety" | "empty" | "truncated", finish)."""
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        return None, "safety", None
    if not response.candidates:
        return None, "empty", None
    reason = response.candidates[0].finish_reason
    finish = str(getattr(reason, "value", reason)) if reason is not None else None
    if finish in _BLOCKED_FINISH:
        return None, "safety", finish
    if finish == "MAX_TOKENS":
        # Cut at the output cap: a half-written JSON array, or a message without its end.
        return None, TRUNCATED, finish
    text = response.text
    return (text, None, finish) if text and text.strip() else (None, "empty", finish)
