"""The send step with a sender per salon and with the Cloud API: each salon's messages leave from its own number
within its own limit, a salon without a usable sender is skipped, a template Meta refuses stops the company's
sending, and a Cloud API row records the approved template it sent, with no Gemini request at all."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from reactivation.core.settings import Settings, load_settings
from reactivation.core.vocabulary import Status, Step
from reactivation.delivery.cloud_api import CloudApiSender
from reactivation.flow import pipeline
from reactivation.flow.pipeline import Continue, RetryLater, Stop
from reactivation.runtime import Runtime
from tests.chains import claim, rows, run_chain
from tests.fake_gateway import FakeGateway
from tests.fake_gemini import FakeGemini, settings_for
from tests.salon import build_salon

SALON_A, SALON_B = 962302, 962303


def runtime_with(base: Settings, **overrides: object) -> Runtime:
    return Runtime(load_settings(**{**base.model_dump(), **overrides}, _env_file=None))


def cloud_settings(gateway: FakeGateway, **overrides: object) -> dict[str, object]:
    """The Cloud API against the fake Graph API, default phone number id 555 (None: no default)."""
    gateway.configure(cloud_token="c-token")
    return {
        "whatsapp_provider": "cloud_api",
        "whatsapp_cloud_api_url": gateway.url,
        "whatsapp_cloud_api_token": "c-token",
        "whatsapp_cloud_phone_number_id": "555",
        **overrides,
    }


@pytest.fixture
def cloud_rt(committed_settings: Settings, gateway: FakeGateway) -> Iterator[Runtime]:
    rt = runtime_with(committed_settings, **cloud_settings(gateway))
    yield rt
    rt.dispose()


def test_two_salons_send_from_their_own_senders_each_within_its_own_limit(
    committed_settings: Settings, committed_engine: Engine, gateway: FakeGateway
) -> None:
    # Given two salons with their own gateway sessions, a limit of 3 messages per sender in 10 minutes, and the
    # second salon's new number limited to 2
    a = build_salon(committed_engine, due=5, company_id=SALON_A, settings={"sender_id": "salon-a"}, extras=False)
    b = build_salon(
        committed_engine,
        due=5,
        company_id=SALON_B,
        settings={"sender_id": "salon-b", "sender_rate_limit": "2/600"},
        extras=False,
    )
    gateway.configure(senders={"salon-a", "salon-b"})
    rt = runtime_with(
        committed_settings, whatsapp_provider="gateway", whatsapp_gateway_url=gateway.url, whatsapp_rate_limit="3/600"
    )
    try:
        # When every chain of both salons runs at the same moment
        outcomes = {
            salon.company_id: Counter(type(run_chain(rt, salon, h)[-1]).__name__ for h in claim(rt, salon))
            for salon in (a, b)
        }
    finally:
        rt.dispose()
    # Then each salon's messages left from its own sender, each as many as its own limit allows
    senders = Counter(m["sender_id"] for m in gateway.messages())
    assert senders == {"salon-a": 3, "salon-b": 2}
    phones_of = {"salon-a": set(a.phones.values()), "salon-b": set(b.phones.values())}
    assert all(m["phone"] in phones_of[m["sender_id"]] for m in gateway.messages())
    # and the rest wait for their own sender's next slot, not another salon's
    assert outcomes == {SALON_A: {"Stop": 3, "RetryLater": 2}, SALON_B: {"Stop": 2, "RetryLater": 3}}
    waiting = [r for r in rows(committed_engine, SALON_A) if r.status == Status.GENERATED]
    assert len(waiting) == 2 and all(r.next_attempt_at is not None for r in waiting)


def test_salons_without_a_sender_of_their_own_share_the_default_one_and_its_limit(
    committed_settings: Settings, committed_engine: Engine, gateway: FakeGateway
) -> None:
    a = build_salon(committed_engine, due=2, company_id=SALON_A, extras=False)
    b = build_salon(committed_engine, due=2, company_id=SALON_B, extras=False)
    rt = runtime_with(
        committed_settings, whatsapp_provider="gateway", whatsapp_gateway_url=gateway.url, whatsapp_rate_limit="3/600"
    )
    try:
        for salon in (a, b):
            for history_id in claim(rt, salon):
                run_chain(rt, salon, history_id)
    finally:
        rt.dispose()
    # One number, one limit: three messages in all, without a sender_id (the gateway's default session)
    assert [m["sender_id"] for m in gateway.messages()] == [None, None, None]


def test_a_salon_whose_sender_is_refused_is_skipped_never_sent_from_another_number(
    committed_settings: Settings, committed_engine: Engine, gateway: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a salon whose session the gateway does not know
    salon = build_salon(committed_engine, due=3, settings={"sender_id": "salon-gone"}, extras=False)
    gateway.configure(senders={"another-salon"})
    rt = runtime_with(committed_settings, whatsapp_provider="gateway", whatsapp_gateway_url=gateway.url)
    try:
        with caplog.at_level(logging.ERROR):
            ends = [run_chain(rt, salon, history_id)[-1] for history_id in claim(rt, salon)]
    finally:
        rt.dispose()
    # Then every row is skipped with the reason, nothing was sent, and only the first one asked the gateway
    assert ends == [Stop("sender_refused")] * 3
    assert {(r.status, r.skip_reason) for r in rows(committed_engine, salon.company_id)} == {
        ("skipped", "sender_refused")
    }
    assert gateway.messages() == [] and gateway.stats()["send_requests"] == 1
    stops = [r for r in caplog.records if r.getMessage().startswith("company sending stopped")]
    assert len(stops) == 1 and "salon-gone" in stops[0].fix  # type: ignore[attr-defined]


def test_a_salon_without_any_sender_is_skipped(
    committed_settings: Settings, committed_engine: Engine, gateway: FakeGateway
) -> None:
    # Given the Cloud API without a default phone number id, and a salon that names none
    salon = build_salon(committed_engine, due=1, extras=False)
    rt = runtime_with(committed_settings, **cloud_settings(gateway, whatsapp_cloud_phone_number_id=None))
    try:
        [history_id] = claim(rt, salon)
        assert run_chain(rt, salon, history_id)[-1] == Stop("sender_missing")
    finally:
        rt.dispose()
    [row] = rows(committed_engine, salon.company_id)
    assert (row.status, row.skip_reason) == ("skipped", "sender_missing")
    assert "WHATSAPP_CLOUD_PHONE_NUMBER_ID" in (row.error or "")
    assert gateway.stats()["cloud_requests"] == 0


def test_the_cloud_api_row_records_the_approved_template_and_gemini_is_never_asked(
    committed_settings: Settings, committed_engine: Engine, gateway: FakeGateway
) -> None:
    # Given the Cloud API and a Gemini key (a fake Gemini that counts its requests)
    salon = build_salon(committed_engine, due=6, extras=False)
    with FakeGemini() as gemini:
        settings = settings_for(gemini, committed_settings, **cloud_settings(gateway))
        rt = Runtime(settings)
        try:
            sender = rt.sender
            assert isinstance(sender, CloudApiSender)
            # (and a campaign's claims are not queued for Gemini batches: its rows take their chains' generate step)
            assert rt.batch_writer is not None and not pipeline.written_by_batches(rt)
            # When the campaign runs
            for history_id in claim(rt, salon):
                assert run_chain(rt, salon, history_id)[-1] == Stop("done")
        finally:
            rt.dispose()
        # Then Gemini got no request at all
        assert gemini.requests == []
    # And each row's text is the approved template filled with the very parameters Meta received
    received = {m["idempotency_key"]: m for m in gateway.messages()}
    for row in rows(committed_engine, salon.company_id):
        sent = received[f"reactivation:{salon.company_id}:{row.id}"]
        step = Step(row.step)
        assert row.message_text == sender._templates.render(step, sent["parameters"])
        assert (row.template_name, row.template_language) == (sent["template"], sent["language"])
        assert (row.generator, row.variant, row.model) == ("template", f"cloud_api:{sent['template']}", None)


def test_a_template_meta_refuses_stops_the_company_with_one_error_naming_the_setting(
    cloud_rt: Runtime, committed_engine: Engine, gateway: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    # Given an approved template whose parameters do not match (Meta's 132000)
    salon = build_salon(committed_engine, due=4, extras=False)
    gateway.configure(cloud_fail_next=[{"code": 132000, "status": 400, "message": "Number of parameters"}])
    # When every chain runs
    with caplog.at_level(logging.ERROR):
        ends = [run_chain(cloud_rt, salon, history_id)[-1] for history_id in claim(cloud_rt, salon)]
    # Then one request reached Meta, and one ERROR line says which setting to fix
    assert gateway.stats()["cloud_requests"] == 1 and gateway.messages() == []
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == ["company sending stopped until what `fix` names is fixed"]
    assert errors[0].fix == "WHATSAPP_CLOUD_TEMPLATE_GENTLE"  # type: ignore[attr-defined]
    # And no message is lost: every row waits, unsent, for the stop to lapse
    assert ends == [Stop("held")] + [Stop("company sending stopped")] * 3
    waiting = rows(committed_engine, salon.company_id)
    assert {r.status for r in waiting} == {"generated"} and len({r.send_after for r in waiting}) == 1
    # When the stop lapses and the template is fixed, the rows go
    later = waiting[0].send_after
    assert later is not None
    cloud_rt.redis.delete(f"{cloud_rt.settings.redis_key_prefix}reactivation:sending-stop:{salon.company_id}")
    for row in waiting:
        outcome = pipeline.send_message(cloud_rt, company_id=salon.company_id, history_id=row.id, now=later)
        assert outcome == Continue()
    assert len(gateway.messages()) == 4


def test_a_rate_limited_cloud_send_waits_for_its_own_number(
    committed_settings: Settings, committed_engine: Engine, gateway: FakeGateway
) -> None:
    # Given a salon with its own Cloud API number and a limit of one message per 10 minutes
    salon = build_salon(committed_engine, due=2, settings={"sender_id": "777"}, extras=False)
    rt = runtime_with(committed_settings, **cloud_settings(gateway, whatsapp_rate_limit="1/600"))
    try:
        ends = [run_chain(rt, salon, history_id)[-1] for history_id in claim(rt, salon)]
    finally:
        rt.dispose()
    assert ends[0] == Stop("done") and isinstance(ends[1], RetryLater)
    assert [m["phone_number_id"] for m in gateway.messages()] == ["777"]
