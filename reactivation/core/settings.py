"""The one settings object, read from the environment (and an optional `.env`) at the edge and passed in."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from reactivation.core.gemini_models import check_thinking_level

# The embedded default keeps every file it writes under one folder that git ignores.
DATA_DIR = Path("var")
DEFAULT_DATABASE_URL = f"sqlite:///{DATA_DIR / 'reactivation.db'}"
DEFAULT_OUTBOX_PATH = DATA_DIR / "outbox.jsonl"
# Meta's Graph API version: v25.0 (released 2026-02-18) is supported until 2028-07-29, past the whole of 2027;
# v21.0 retires on 2027-01-21, and v26.0's end of support is not announced yet.
DEFAULT_GRAPH_API_VERSION = "v25.0"
_GRAPH_VERSION = re.compile(r"^v\d{1,3}\.\d$")
# The approved templates' bodies this product suggests submitting to Meta: they read well whatever the service's
# title (no declension after a preposition) and with the fallback name. {{1}} name, {{2}} service, {{3}} discount.
DEFAULT_TEMPLATE_TEXTS = {
    "gentle": "{{1}}, добрый день! Давно вас не видели. Ждём вас снова, ваша услуга: {{2}}. Записать вас?",
    "offer": "{{1}}, добрый день! Для вас скидка {{3}}% на услугу: {{2}}. Записать вас на удобное время?",
    "win_back": "{{1}}, мы скучаем! Специально для вас скидка {{3}}% на услугу: {{2}}. Когда вам удобно прийти?",
}
# How many body parameters each step's template takes ({{1}}..{{n}}, each used).
TEMPLATE_PARAMETERS = {"gentle": 2, "offer": 3, "win_back": 3}
_PLACEHOLDER = re.compile(r"\{\{(\d+)\}\}")

# The Gemini API's own current Flash model (the 2.0 models are shut down, 2.5 Flash is deprecated).
DEFAULT_GEMINI_MODEL = "gemini-3.8-flash"

# What one item of a batch answer needs at least: a 250-character message in Russian and its JSON around it.
MIN_OUTPUT_TOKENS_PER_ITEM = 128

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


class SettingsError(ValueError):
    """A setting has a wrong value; the message names the environment variable."""


@dataclass(frozen=True)
class RateLimit:
    """At most `calls` in any sliding window of `seconds`."""

    calls: int
    seconds: int

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """Parse "15/60" (calls/seconds)."""
        match = _RATE.match(text)
        if not match:
            raise ValueError(f"expected CALLS/SECONDS such as 15/60, got {text!r}")
        calls, seconds = int(match[1]), int(match[2])
        if calls < 1 or seconds < 1:
            raise ValueError(f"calls and seconds must be positive, got {text!r}")
        return cls(calls, seconds)

    def __str__(self) -> str:
        return f"{self.calls}/{self.seconds}"


class Settings(BaseSettings):
    """Process-wide settings. Names are the environment variables, upper-cased."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", env_ignore_empty=True)

    database_url: str = DEFAULT_DATABASE_URL
    # Unset: the embedded default uses an in-process Redis stand-in and runs tasks eagerly.
    redis_url: str | None = None
    celery_broker_url: str | None = None
    # Prefix for every Redis key this product writes. Empty in production, because the AI admin
    # reads `dialog:{company}:{phone}` as it is; tests give each run its own prefix.
    redis_key_prefix: str = ""

    gemini_api_key: SecretStr | None = None
    gemini_base_url: str | None = None
    gemini_model: str = DEFAULT_GEMINI_MODEL
    gemini_rate_limit: str = "15/60"
    # Per request; the SDK has no timeout of its own. A batch of 20 at thinking level low takes seconds, not tens.
    gemini_timeout_seconds: float = Field(default=40.0, gt=0, le=300)
    # Every attempt and wait for one batch (and its single-client retries) together; past it the templates are used.
    gemini_budget_seconds: float = Field(default=90.0, gt=0, le=600)
    gemini_max_attempts: int = Field(default=4, ge=1, le=10)
    # Messages written by one request (1: one request per client). See the README for why 20.
    gemini_batch_size: int = Field(default=20, ge=1, le=50)
    # A batch that is not full leaves once its oldest row has waited this long.
    gemini_batch_wait_seconds: float = Field(default=2.0, ge=0, le=60)
    # Sent with every request; checked against what the model accepts (reactivation.core.gemini_models).
    gemini_thinking_level: Literal["minimal", "low", "medium", "high", "default"] = "low"
    # The answer's cap, thinking included: a batch of 20 needs about 2,000 tokens of text and a few hundred of
    # thought at level low; the cap only bounds a runaway answer, it costs nothing unused.
    gemini_max_output_tokens: int = Field(default=8192, ge=MIN_OUTPUT_TOKENS_PER_ITEM, le=65536)
    # Requests per Pacific day (Google's quota day), counted in Redis across every worker; unset: no own limit.
    gemini_daily_limit: int | None = Field(default=None, ge=1)
    # How long a region, key or model error keeps Gemini off for every worker before one request probes it.
    gemini_pause_seconds: float = Field(default=600.0, ge=1, le=86_400)

    whatsapp_provider: Literal["gateway", "cloud_api", "outbox"] = "outbox"
    whatsapp_gateway_url: str | None = None
    whatsapp_gateway_token: SecretStr | None = None
    whatsapp_outbox_path: Path = DEFAULT_OUTBOX_PATH
    whatsapp_rate_limit: str = "30/60"
    whatsapp_timeout_seconds: float = Field(default=15.0, gt=0, le=300)
    # The Graph API host, without a version: the version is WHATSAPP_CLOUD_API_VERSION.
    whatsapp_cloud_api_url: str = "https://graph.facebook.com"
    whatsapp_cloud_api_version: str = DEFAULT_GRAPH_API_VERSION
    whatsapp_cloud_api_token: SecretStr | None = None
    # The default sender: the phone number id of companies whose settings name no sender_id of their own.
    whatsapp_cloud_phone_number_id: str | None = None
    whatsapp_cloud_template_language: str = "ru"
    # Approved marketing templates per step; parameters: first name, service, discount.
    whatsapp_cloud_template_gentle: str = "reactivation_gentle"
    whatsapp_cloud_template_offer: str = "reactivation_offer"
    whatsapp_cloud_template_win_back: str = "reactivation_win_back"
    # Each template's body as Meta approved it, {{1}} first name, {{2}} service, {{3}} discount: the history row and
    # the AI admin get this text with the parameters filled, which is what the client actually receives.
    whatsapp_cloud_template_gentle_text: str = DEFAULT_TEMPLATE_TEXTS["gentle"]
    whatsapp_cloud_template_offer_text: str = DEFAULT_TEMPLATE_TEXTS["offer"]
    whatsapp_cloud_template_win_back_text: str = DEFAULT_TEMPLATE_TEXTS["win_back"]

    # The delivery-status webhooks (`reactivation webhook serve`): Meta signs its posts with the app secret
    # (X-Hub-Signature-256) and checks the subscription with the verify token; the gateway sends a bearer token.
    whatsapp_app_secret: SecretStr | None = None
    whatsapp_webhook_verify_token: SecretStr | None = None
    whatsapp_gateway_webhook_token: SecretStr | None = None

    # The Redis broker hands an unacknowledged task to another worker after this long; every countdown
    # a task uses stays far below it (see max_countdown_seconds).
    celery_visibility_timeout_seconds: int = Field(default=3600, ge=30, le=24 * 3600)

    # How often beat's planner looks for companies whose local send time has come.
    beat_tick_seconds: float = Field(default=300.0, ge=1, le=3600)

    # The averages job splits a PostgreSQL company's clients into this many shares computed at once, each on its
    # own database connection: about one per core the database server can spare (1: one connection, no split).
    averages_workers: int = Field(default=2, ge=1, le=8)

    # How long the AI admin's pendingAction lives in Redis.
    context_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level_any_case(cls, value: object) -> object:
        # LOG_LEVEL=debug means what LOG_LEVEL=DEBUG means, as in Python's logging and Celery's -l.
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("gemini_rate_limit", "whatsapp_rate_limit")
    @classmethod
    def _rate_limit_format(cls, value: str) -> str:
        RateLimit.parse(value)
        return value.strip()

    @field_validator("database_url")
    @classmethod
    def _database_url_scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError("must start with sqlite:// or postgresql+psycopg://")
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            # psycopg 3 is the only driver installed; name it so SQLAlchemy does not look for psycopg2.
            value = "postgresql+psycopg://" + value.split("://", 1)[1]
        return value

    @field_validator("redis_url", "celery_broker_url", "gemini_base_url", "whatsapp_gateway_url")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("whatsapp_cloud_api_version")
    @classmethod
    def _graph_version(cls, value: str) -> str:
        if not _GRAPH_VERSION.match(value.strip()):
            raise ValueError(f"expected a Graph API version such as {DEFAULT_GRAPH_API_VERSION}, got {value!r}")
        return value.strip()

    @field_validator("whatsapp_cloud_api_url")
    @classmethod
    def _graph_url_without_version(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if re.search(r"/v\d+(\.\d+)?$", value):
            raise ValueError("give the host only; the version goes in WHATSAPP_CLOUD_API_VERSION")
        return value

    @field_validator("whatsapp_cloud_phone_number_id")
    @classmethod
    def _phone_number_id(cls, value: str | None) -> str | None:
        value = (value or "").strip() or None
        if value is not None and not value.isdigit():
            raise ValueError("must be the numeric phone number id")
        return value

    @model_validator(mode="after")
    def _template_texts(self) -> Settings:
        for step, count in TEMPLATE_PARAMETERS.items():
            text = getattr(self, f"whatsapp_cloud_template_{step}_text")
            used = sorted({int(n) for n in _PLACEHOLDER.findall(text)})
            if used != list(range(1, count + 1)):
                wanted = ", ".join(f"{{{{{n}}}}}" for n in range(1, count + 1))
                raise ValueError(
                    f"WHATSAPP_CLOUD_TEMPLATE_{step.upper()}_TEXT must use exactly {wanted} (the template's "
                    f"parameters), found {used or 'none'}"
                )
        return self

    @model_validator(mode="after")
    def _gemini_request_fits_the_model(self) -> Settings:
        problem = check_thinking_level(self.gemini_model, self.gemini_thinking_level)
        if problem is not None:
            raise ValueError(problem)
        needed = self.gemini_batch_size * MIN_OUTPUT_TOKENS_PER_ITEM
        if self.gemini_max_output_tokens < needed:
            raise ValueError(
                f"GEMINI_MAX_OUTPUT_TOKENS {self.gemini_max_output_tokens} leaves less than "
                f"{MIN_OUTPUT_TOKENS_PER_ITEM} tokens per message of a batch of {self.gemini_batch_size} "
                f"(GEMINI_BATCH_SIZE), thinking included; set it to at least {needed}"
            )
        return self

    @model_validator(mode="after")
    def _provider_needs(self) -> Settings:
        if self.whatsapp_provider == "gateway" and not self.whatsapp_gateway_url:
            raise ValueError("WHATSAPP_GATEWAY_URL is required when WHATSAPP_PROVIDER=gateway")
        if self.whatsapp_provider == "cloud_api" and not self.whatsapp_cloud_api_token:
            raise ValueError("WHATSAPP_CLOUD_API_TOKEN is required when WHATSAPP_PROVIDER=cloud_api")
        return self

    @property
    def gemini_limit(self) -> RateLimit:
        return RateLimit.parse(self.gemini_rate_limit)

    @property
    def whatsapp_limit(self) -> RateLimit:
        return RateLimit.parse(self.whatsapp_rate_limit)

    @property
    def max_countdown_seconds(self) -> int:
        """The longest countdown a task may schedule: a sixth of the visibility timeout."""
        return max(1, self.celery_visibility_timeout_seconds // 6)

    @property
    def broker_url(self) -> str:
        """The Celery broker: CELERY_BROKER_URL, else REDIS_URL, else in-memory (embedded default)."""
        return self.celery_broker_url or self.redis_url or "memory://"

    @property
    def embedded(self) -> bool:
        """True when no Redis is configured: tasks run in-process against a Redis stand-in."""
        return self.redis_url is None

    @property
    def database_description(self) -> str:
        """Where the data is written, as an operator is told it: the SQLite file, or DATABASE_URL, password masked."""
        if self.database_url.startswith("sqlite"):
            return f"SQLite at {self.database_url.split(':///', 1)[-1] or 'memory'}"
        return masked_url(self.database_url)

    @property
    def redis_description(self) -> str:
        """Which Redis is used, as an operator is told it: REDIS_URL, password masked, or the in-process stand-in."""
        return masked_url(self.redis_url) if self.redis_url else "an in-process Redis stand-in (REDIS_URL unset)"

    @property
    def gemini_enabled(self) -> bool:
        return self.gemini_api_key is not None and bool(self.gemini_api_key.get_secret_value())


def masked_url(url: str) -> str:
    """A URL as it may be shown to a person or a log: its password, if any, replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment; a wrong value raises SettingsError naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            location = "_".join(str(part) for part in error["loc"]).upper()
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{location}: {message}" if location else message)
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once at the edge (CLI start, worker start)."""
    return load_settings()
