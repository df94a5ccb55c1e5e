"""Per-company settings: the `companies.settings` JSON, validated with defaults when a company is loaded."""

from __future__ import annotations

from datetime import time
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from reactivation.core.settings import RateLimit


class CompanyConfigError(ValueError):
    """A company's row holds a value the product cannot work with; the message names the company."""

    def __init__(self, company_id: int, problem: str) -> None:
        super().__init__(f"company {company_id}: {problem}")
        self.company_id = company_id
        self.problem = problem


def _parse_hhmm(value: object) -> object:
    if isinstance(value, str):
        try:
            hours, minutes = value.strip().split(":")
            return time(int(hours), int(minutes))
        except ValueError:
            raise ValueError(f"expected HH:MM, got {value!r}") from None
    return value


class CompanySettings(BaseModel):
    """What a salon can tune. Unknown keys are kept out so that a typo fails loudly."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    send_time: time = time(10, 0)
    send_window_start: time = time(9, 0)
    send_window_end: time = time(20, 0)
    skip_holidays: bool = True
    holdout_percent: float = Field(default=0, ge=0, le=100)
    grace_days: int = Field(default=3, ge=0, le=60)
    daily_limit: int = Field(default=300, ge=0, le=100_000)
    max_inactive_days: int = Field(default=365, ge=1, le=3650)
    min_days_between_messages: int = Field(default=7, ge=0, le=365)
    attribution_days: int = Field(default=7, ge=1, le=90)
    retention_days: int = Field(default=365, ge=30, le=3650)
    consent_mode: Literal["assumed", "required"] = "assumed"
    reply_classifier: Literal["rules", "gemini"] = "rules"
    # Which WhatsApp number (sender) this salon sends from: the gateway's session or the Cloud API's phone number id.
    # None: the deployment's default sender. The per-sender rate limit is keyed on it.
    sender_id: str | None = None
    # This sender's own pace, "CALLS/SECONDS" (e.g. "250/86400" for a new Cloud API number); None: WHATSAPP_RATE_LIMIT.
    # Salons sharing a sender should give it the same value.
    sender_rate_limit: str | None = None

    _parse_times = field_validator("send_time", "send_window_start", "send_window_end", mode="before")(_parse_hhmm)

    @field_validator("sender_id")
    @classmethod
    def _sender_id(cls, value: str | None) -> str | None:
        value = (value or "").strip() or None
        if value is not None and (len(value) > 100 or not value.isprintable()):
            raise ValueError("must be at most 100 printable characters")
        return value

    @field_validator("sender_rate_limit")
    @classmethod
    def _sender_rate_limit(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return str(RateLimit.parse(value))

    @property
    def sender_limit(self) -> RateLimit | None:
        """The sender's own rate limit, when the salon sets one."""
        return RateLimit.parse(self.sender_rate_limit) if self.sender_rate_limit else None

    @model_validator(mode="after")
    def _window_is_a_window(self) -> CompanySettings:
        if self.send_window_end <= self.send_window_start:
            raise ValueError(
                f"send_window_end {self.send_window_end:%H:%M} must be after "
                f"send_window_start {self.send_window_start:%H:%M}"
            )
        return self


def parse_company_settings(company_id: int, raw: Any) -> CompanySettings:
    """Validate a company's settings JSON; a bad value raises CompanyConfigError naming the company."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise CompanyConfigError(company_id, f"settings must be a JSON object, got {type(raw).__name__}")
    try:
        return CompanySettings.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise CompanyConfigError(company_id, f"invalid settings: {problems}") from None


def parse_timezone(company_id: int, name: str | None) -> ZoneInfo:
    """The company's IANA time zone; an unknown one raises CompanyConfigError."""
    try:
        return ZoneInfo(name or "Europe/Moscow")
    except (ZoneInfoNotFoundError, ValueError):
        raise CompanyConfigError(company_id, f"unknown time zone {name!r}") from None
