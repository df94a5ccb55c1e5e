"""The Celery configuration: every option is one Celery knows, and the reliability settings are on."""

from celery.app.defaults import DEFAULTS

from celery_app.config import BEAT_SCHEDULE, QUEUES, ROUTES, celery_config
from reactivation.core.settings import load_settings


def _settings(**overrides: object):  # type: ignore[no-untyped-def]
    return load_settings(_env_file=None, redis_url="redis://127.0.0.1:6379/0", **overrides)


def test_every_option_is_a_real_celery_setting() -> None:
    # A misspelled option silently does nothing; this catches it.
    unknown = set(celery_config(_settings())) - set(DEFAULTS)
    assert unknown == set()


def test_reliability_settings() -> None:
    settings = _settings(celery_visibility_timeout_seconds=1200)
    config = celery_config(settings)
    assert config["task_acks_late"] and config["task_reject_on_worker_lost"]
    assert config["worker_prefetch_multiplier"] == 1
    assert config["task_serializer"] == "json" and config["accept_content"] == ["json"]
    assert config["timezone"] == "UTC" and config["task_ignore_result"]
    assert config["broker_transport_options"]["visibility_timeout"] == 1200
    assert config["result_backend_transport_options"]["visibility_timeout"] == 1200
    assert settings.max_countdown_seconds < 1200
    assert config["task_soft_time_limit"] < config["task_time_limit"]
    assert config["worker_soft_shutdown_timeout"] > 0
    assert not config["task_always_eager"]


def test_embedded_default_runs_eagerly_in_memory() -> None:
    config = celery_config(load_settings(_env_file=None, redis_url=None, celery_broker_url=None))
    assert config["task_always_eager"] and config["broker_url"] == "memory://"


def test_queues_routes_and_beat() -> None:
    assert QUEUES == ("default", "gemini", "whatsapp")
    assert ROUTES["reactivation.generate_message"]["queue"] == "gemini"
    assert ROUTES["reactivation.write_messages"]["queue"] == "gemini"
    assert ROUTES["reactivation.send_message"]["queue"] == "whatsapp"
    assert BEAT_SCHEDULE["plan-campaigns"]["schedule"] == 300.0
    assert BEAT_SCHEDULE["sweep-stuck-rows"]["schedule"] == 60.0


def test_key_prefix_reaches_the_broker() -> None:
    config = celery_config(_settings(redis_key_prefix="test:abc:"))
    assert config["broker_transport_options"]["global_keyprefix"] == "test:abc:"
