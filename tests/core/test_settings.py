from pathlib import Path

import pytest

from reactivation.core.settings import DEFAULT_DATABASE_URL, RateLimit, SettingsError, load_settings
from reactivation.storage.company_settings import CompanyConfigError, parse_company_settings, parse_timezone


def test_defaults_are_the_embedded_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "WHATSAPP_PROVIDER", "GEMINI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(_env_file=None)
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.database_url.startswith("sqlite:///var/")
    assert settings.embedded and settings.broker_url == "memory://"
    assert settings.whatsapp_provider == "outbox"
    assert not settings.gemini_enabled
    assert settings.gemini_limit == RateLimit(15, 60)
    assert settings.whatsapp_limit == RateLimit(30, 60)


def test_the_example_env_file_as_copied_gives_the_embedded_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given `cp .env.example .env` with nothing filled in, and a clean environment
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "GEMINI_API_KEY", "WHATSAPP_PROVIDER"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / ".env").write_text((Path(__file__).parents[2] / ".env.example").read_text())
    monkeypatch.chdir(tmp_path)
    # Then the empty values count as unset, not as wrong values
    settings = load_settings()
    assert settings.database_url == DEFAULT_DATABASE_URL and settings.embedded
    assert settings.gemini_api_key is None and settings.whatsapp_provider == "outbox"


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db/reactivation")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/1")
    monkeypatch.setenv("GEMINI_RATE_LIMIT", "10/30")
    settings = load_settings(_env_file=None)
    assert settings.database_url == "postgresql+psycopg://u@db/reactivation"
    assert settings.broker_url == "redis://cache:6379/1"
    assert settings.gemini_limit == RateLimit(10, 30)
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://broker:6379/2")
    assert load_settings(_env_file=None).broker_url == "redis://broker:6379/2"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GEMINI_RATE_LIMIT", "fifteen"),
        ("WHATSAPP_RATE_LIMIT", "0/60"),
        ("WHATSAPP_PROVIDER", "telegram"),
        ("DATABASE_URL", "mysql://x"),
        ("GEMINI_TIMEOUT_SECONDS", "-1"),
        ("CONTEXT_TTL_SECONDS", "soon"),
        ("WHATSAPP_CLOUD_API_VERSION", "21"),
        ("WHATSAPP_CLOUD_API_URL", "https://graph.facebook.com/v21.0"),
        ("WHATSAPP_CLOUD_PHONE_NUMBER_ID", "salon-1"),
        ("WHATSAPP_CLOUD_TEMPLATE_OFFER_TEXT", "{{1}}, скидка на {{2}}"),
        ("WHATSAPP_CLOUD_TEMPLATE_GENTLE_TEXT", "{{1}}, {{2}} и {{3}}"),
    ],
)
def test_a_wrong_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as error:
        load_settings(_env_file=None)
    assert variable in str(error.value)


def test_gateway_provider_needs_its_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHATSAPP_PROVIDER", "gateway")
    monkeypatch.delenv("WHATSAPP_GATEWAY_URL", raising=False)
    with pytest.raises(SettingsError, match="WHATSAPP_GATEWAY_URL"):
        load_settings(_env_file=None)


def test_api_key_never_appears_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "AIzaSy-very-secret-key-123456")
    settings = load_settings(_env_file=None)
    assert "very-secret" not in repr(settings)
    assert settings.gemini_enabled


def test_the_graph_api_version_is_one_meta_supports_through_2027() -> None:
    # v21.0 retires on 2027-01-21; v25.0 is supported until 2028-07-29
    settings = load_settings(_env_file=None)
    assert settings.whatsapp_cloud_api_version == "v25.0"
    assert settings.whatsapp_cloud_api_url == "https://graph.facebook.com"
    assert load_settings(whatsapp_cloud_api_version=" v26.0 ", _env_file=None).whatsapp_cloud_api_version == "v26.0"


def test_the_cloud_api_needs_a_token_but_no_default_sender() -> None:
    with pytest.raises(SettingsError, match="WHATSAPP_CLOUD_API_TOKEN"):
        load_settings(whatsapp_provider="cloud_api", _env_file=None)
    settings = load_settings(whatsapp_provider="cloud_api", whatsapp_cloud_api_token="t", _env_file=None)
    assert settings.whatsapp_cloud_phone_number_id is None


def test_a_salon_s_own_sender_and_pace() -> None:
    settings = parse_company_settings(1, {"sender_id": " 106540352242922 ", "sender_rate_limit": "250/86400"})
    assert settings.sender_id == "106540352242922"
    assert settings.sender_limit == RateLimit(250, 86_400)
    assert parse_company_settings(1, {}).sender_limit is None


def test_company_settings_defaults_and_values() -> None:
    settings = parse_company_settings(1, {})
    assert (settings.send_window_start.hour, settings.send_window_end.hour) == (9, 20)
    assert settings.grace_days == 3 and settings.daily_limit == 300 and settings.holdout_percent == 0
    assert settings.skip_holidays and settings.consent_mode == "assumed"
    custom = parse_company_settings(1, {"send_window_start": "10:30", "daily_limit": 50, "grace_days": 0})
    assert custom.send_window_start.minute == 30 and custom.daily_limit == 50


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"send_window_start": "21:00", "send_window_end": "09:00"}, "must be after"),
        ({"send_window_start": "9 am"}, "HH:MM"),
        ({"holdout_percent": 150}, "holdout_percent"),
        ({"grace_dayz": 3}, "grace_dayz"),
        ({"sender_rate_limit": "fast"}, "sender_rate_limit"),
        ({"sender_id": "a\nb"}, "sender_id"),
        ("not an object", "JSON object"),
    ],
)
def test_bad_company_settings_name_the_company(raw: object, problem: str) -> None:
    with pytest.raises(CompanyConfigError) as error:
        parse_company_settings(962302, raw)
    assert "company 962302" in str(error.value)
    assert problem in str(error.value)


def test_unknown_time_zone_names_the_company() -> None:
    with pytest.raises(CompanyConfigError, match="company 7: unknown time zone 'Mars/Olympus'"):
        parse_timezone(7, "Mars/Olympus")
    assert parse_timezone(7, None).key == "Europe/Moscow"
