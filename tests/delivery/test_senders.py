"""The WhatsApp senders against the local fake gateway / Cloud API, and the outbox file."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from reactivation.core.settings import load_settings
from reactivation.delivery.senders import (
    CloudApiSender,
    CloudTemplates,
    GatewaySender,
    InvalidSendRequest,
    OutboxSender,
    PermanentSendError,
    SendOutcomeUnknown,
    SendRequest,
    SendSkipped,
    SkipReason,
    TransientSendError,
    classify_cloud_api_error,
    idempotency_key,
    make_sender,
    parse_retry_after,
    read_outbox,
    template_parameters,
)
from reactivation.timing.steps import Step
from tests.fake_gateway import FakeGateway, FakeGatewayProcess

NOW = datetime(2025, 4, 15, 7, 0, tzinfo=UTC)
PHONE = "+79001234567"
TEMPLATES = CloudTemplates(gentle="tpl_gentle", offer="tpl_offer", win_back="tpl_win_back", language="ru")


def clock() -> datetime:
    return NOW


def request(history_id: int = 1, *, phone: str = PHONE, step: Step = Step.GENTLE, **overrides: Any) -> SendRequest:
    values: dict[str, Any] = {
        "company_id": 962302,
        "history_id": history_id,
        "phone": phone,
        "message": "Мария, добрый день! Давно не виделись, ждём вас на маникюр.",
        "idempotency_key": idempotency_key(962302, history_id),
        "step": step,
        "first_name": "Мария",
        "service_title": "Маникюр с покрытием гель-лак",
    }
    values.update(overrides)
    return SendRequest(**values)


def wait_until(condition: Callable[[], bool], *, timeout: float = 10.0) -> None:
    """Poll the fake server (bounded) until it has finished handling what the test started."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


@pytest.fixture
def gateway_sender(gateway: FakeGateway) -> Iterator[GatewaySender]:
    with GatewaySender(gateway.url, timeout_seconds=5, clock=clock) as sender:
        yield sender


def cloud_sender(base_url: str, *, token: str = "cloud-token", timeout: float = 5.0) -> CloudApiSender:
    return CloudApiSender(
        base_url=base_url + "/v21.0",
        token=token,
        phone_number_id="1234567890",
        templates=TEMPLATES,
        timeout_seconds=timeout,
        clock=clock,
    )


def mock_gateway(handler: Callable[[httpx.Request], httpx.Response]) -> GatewaySender:
    return GatewaySender("http://gateway.test", http_client=httpx.Client(transport=httpx.MockTransport(handler)))


# --- the request ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("phone", ["89001234567", "79001234567", "+7 900 123-45-67", "+0123456789", "", "+7900"])
def test_a_request_needs_an_e164_phone_and_says_so_without_printing_it(phone: str) -> None:
    with pytest.raises(InvalidSendRequest, match=r"history 1: phone .* is not E\.164") as caught:
        request(phone=phone)
    assert "9001234567" not in str(caught.value)


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"message": "   "}, "empty message"),
        ({"message": "я" * 4097}, "4097 characters"),
        ({"idempotency_key": ""}, "idempotency key"),
        ({"idempotency_key": "has spaces in it"}, "idempotency key"),
        ({"step": 7}, "unknown step 7"),
        ({"discount_percent": 150}, "not in 0-100"),
    ],
)
def test_a_request_with_unusable_data_is_refused(overrides: dict[str, Any], problem: str) -> None:
    with pytest.raises(InvalidSendRequest, match=problem):
        request(**overrides)


def test_a_request_takes_the_steps_discount_unless_told_otherwise() -> None:
    assert request(step=2).step is Step.OFFER  # type: ignore[arg-type]
    assert request(step=Step.OFFER).discount == 10
    assert request(step=Step.WIN_BACK).discount == 20
    assert request(step=Step.WIN_BACK, discount_percent=15).discount == 15
    assert idempotency_key(962302, 4567) == "reactivation:962302:4567"


# --- gateway -------------------------------------------------------------------------------------------------------


def test_the_gateway_gets_phone_message_and_idempotency_key(
    gateway: FakeGateway, gateway_sender: GatewaySender
) -> None:
    # when one message is sent
    result = gateway_sender.send(request(7))
    # then the gateway received it once, and the result carries its id and the send time
    [received] = gateway.messages()
    assert received["phone"] == PHONE
    assert received["message"].startswith("Мария, добрый день!")
    assert received["idempotency_key"] == "reactivation:962302:7"
    assert received["sender_id"] is None
    assert (result.provider, result.provider_message_id, result.sent_at, result.duplicate) == (
        "gateway",
        received["id"],
        NOW,
        False,
    )


def test_a_repeated_idempotency_key_is_one_message(gateway: FakeGateway, gateway_sender: GatewaySender) -> None:
    first = gateway_sender.send(request(7))
    again = gateway_sender.send(request(7))
    assert len(gateway.messages()) == 1
    assert again.provider_message_id == first.provider_message_id
    assert again.duplicate


def test_the_sender_number_goes_to_the_gateway_when_the_salon_has_one(
    gateway: FakeGateway, gateway_sender: GatewaySender
) -> None:
    gateway_sender.send(request(8, sender_id="salon-2"))
    assert gateway.messages()[0]["sender_id"] == "salon-2"


def test_the_bearer_token_is_sent_and_a_wrong_one_is_permanent_for_every_message(gateway: FakeGateway) -> None:
    gateway.configure(token="right-token")
    with GatewaySender(gateway.url, token="right-token", clock=clock) as sender:
        sender.send(request(1))
    with (
        GatewaySender(gateway.url, token="wrong-token", clock=clock) as sender,
        pytest.raises(PermanentSendError) as caught,
    ):
        sender.send(request(2))
    assert caught.value.code == "401"
    assert caught.value.affects_all_messages
    assert [m["idempotency_key"] for m in gateway.messages()] == ["reactivation:962302:1"]


def test_a_503_is_transient_with_the_gateways_retry_hint(gateway: FakeGateway, gateway_sender: GatewaySender) -> None:
    gateway.configure(down="503")
    with pytest.raises(TransientSendError) as caught:
        gateway_sender.send(request(1))
    assert caught.value.status_code == 503
    assert caught.value.retry_after == 1.0
    assert not caught.value.maybe_delivered
    assert gateway.messages() == []


def test_a_refused_connection_is_transient_and_sending_resumes_when_the_gateway_is_back(
    gateway: FakeGateway, gateway_sender: GatewaySender
) -> None:
    # given a gateway that was reachable (so the client holds a pooled connection) and then went down
    gateway_sender.send(request(1))
    gateway.configure(down="refuse")
    # when a message is sent, then the refusal is transient and nothing was received
    with pytest.raises(TransientSendError, match=r"could not connect|no answer"):
        gateway_sender.send(request(2))
    with pytest.raises(TransientSendError, match="could not connect"):
        gateway_sender.send(request(2))
    # and when the gateway is back, the retry goes through
    gateway.configure(down=None)
    gateway_sender.send(request(2))
    assert [m["idempotency_key"] for m in gateway.messages()] == ["reactivation:962302:1", "reactivation:962302:2"]


def test_five_percent_of_503s_are_retried_into_exactly_one_message_each(
    gateway: FakeGateway, gateway_sender: GatewaySender
) -> None:
    # given a gateway that answers 503 to every 20th request
    gateway.configure(fail_fraction=0.05)
    transient = 0
    # when 100 messages are each retried until accepted (at most 3 attempts)
    for history_id in range(1, 101):
        for _attempt in range(3):
            try:
                gateway_sender.send(request(history_id))
                break
            except TransientSendError:
                transient += 1
    # then exactly 5 attempts failed, and every message arrived exactly once
    assert transient == 5
    keys = [m["idempotency_key"] for m in gateway.messages()]
    assert sorted(keys) == sorted(idempotency_key(962302, h) for h in range(1, 101))
    assert gateway.stats()["failed_503"] == 5


def test_a_read_timeout_is_transient_because_the_idempotency_key_makes_a_retry_safe(gateway: FakeGateway) -> None:
    # given a gateway slower than the sender's timeout
    gateway.configure(latency=0.5)
    with GatewaySender(gateway.url, timeout_seconds=0.1, clock=clock) as sender:
        with pytest.raises(TransientSendError, match="ReadTimeout") as caught:
            sender.send(request(3))
        assert caught.value.maybe_delivered
        # when the retry comes (the gateway is fast again)
        gateway.configure(latency=0)
        sender.send(request(3))
    # then, once the slow first request has also been handled, the client has one message, not two
    wait_until(lambda: gateway.stats()["send_requests"] == 2 and gateway.stats()["duplicates"] == 1)
    assert len(gateway.messages()) == 1


def test_a_rejected_message_is_permanent(gateway: FakeGateway, gateway_sender: GatewaySender) -> None:
    gateway.configure(reject_status=400, reject_phones=[PHONE])
    with pytest.raises(PermanentSendError) as caught:
        gateway_sender.send(request(1))
    assert (caught.value.code, caught.value.affects_all_messages) == ("400", False)
    # other numbers still go through
    gateway_sender.send(request(2, phone="+79009998877"))
    assert [m["phone"] for m in gateway.messages()] == ["+79009998877"]


def test_a_2xx_without_an_id_is_an_unknown_outcome_never_sent_or_retried(
    gateway: FakeGateway, gateway_sender: GatewaySender
) -> None:
    gateway.configure(no_id=True)
    with pytest.raises(SendOutcomeUnknown, match="without a usable message id"):
        gateway_sender.send(request(1))


@pytest.mark.parametrize(
    ("response", "outcome", "attributes"),
    [
        (httpx.Response(429, headers={"Retry-After": "7"}, json={}), TransientSendError, {"retry_after": 7.0}),
        (httpx.Response(500, text="oops"), TransientSendError, {"retry_after": None}),
        (httpx.Response(502, text="bad gateway"), TransientSendError, {"code": "502"}),
        (httpx.Response(404, text="no such path"), PermanentSendError, {"affects_all_messages": True}),
        (httpx.Response(422, json={"error": "bad"}), PermanentSendError, {"affects_all_messages": False}),
        (httpx.Response(301, headers={"Location": "http://elsewhere"}), PermanentSendError, {"code": "301"}),
        (httpx.Response(200, text="<html>Welcome to nginx, +79001234567</html>"), SendOutcomeUnknown, {}),
        (httpx.Response(200, json={"id": ""}), SendOutcomeUnknown, {}),
        (httpx.Response(200, json=["id"]), SendOutcomeUnknown, {}),
        (httpx.Response(409, json={"error": "duplicate"}), SendOutcomeUnknown, {}),
    ],
)
def test_gateway_answers_map_to_outcomes(
    response: httpx.Response, outcome: type[Exception], attributes: dict[str, Any]
) -> None:
    sender = mock_gateway(lambda _request: response)
    with pytest.raises(outcome) as caught:
        sender.send(request(1))
    for name, value in attributes.items():
        assert getattr(caught.value, name) == value
    # the phone never appears whole in an error, even when the gateway echoes it back
    assert "79001234567" not in str(caught.value)


def test_a_409_with_an_id_is_a_duplicate_the_gateway_recognised() -> None:
    sender = mock_gateway(lambda _request: httpx.Response(409, json={"id": "gw-1"}))
    result = sender.send(request(1))
    assert (result.provider_message_id, result.duplicate) == ("gw-1", True)


def test_integer_ids_are_accepted() -> None:
    sender = mock_gateway(lambda _request: httpx.Response(201, json={"id": 12345}))
    assert sender.send(request(1)).provider_message_id == "12345"


def test_a_gateway_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="http"):
        GatewaySender("gateway.local:8080")


def test_neither_the_token_nor_the_phone_reach_the_logs(gateway: FakeGateway, caplog: pytest.LogCaptureFixture) -> None:
    gateway.configure(token="s3cr3t-token-value")
    caplog.set_level(logging.DEBUG)
    with GatewaySender(gateway.url, token="s3cr3t-token-value", clock=clock) as sender:
        sender.send(request(1))
        gateway.configure(down="503")
        with pytest.raises(TransientSendError):
            sender.send(request(2))
    everything = caplog.text + " ".join(str(record.__dict__) for record in caplog.records)
    assert "s3cr3t-token-value" not in everything
    assert "9001234567" not in everything
    assert any(record.getMessage() == "whatsapp message sent" for record in caplog.records)
    assert any(record.getMessage() == "whatsapp message not sent" for record in caplog.records)


# --- the fake gateway in its own process --------------------------------------------------------------------------


@pytest.mark.subprocess
def test_the_fake_gateway_runs_as_a_separate_process() -> None:
    with FakeGatewayProcess(lifetime=60, fail_fraction=0.5) as fake:
        with GatewaySender(fake.url, clock=clock) as sender:
            with pytest.raises(TransientSendError):
                for history_id in (1, 2):
                    sender.send(request(history_id))
            fake.configure(down="refuse")
            with pytest.raises(TransientSendError, match=r"could not connect|no answer"):
                sender.send(request(3))
            fake.configure(down=None, fail_fraction=0)
            sender.send(request(3))
        assert [m["idempotency_key"] for m in fake.messages()] == ["reactivation:962302:1", "reactivation:962302:3"]
        assert fake.stats()["failed_503"] == 1


# --- Cloud API -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "template", "parameters"),
    [
        (Step.GENTLE, "tpl_gentle", ["Мария", "Маникюр с покрытием гель-лак"]),
        (Step.OFFER, "tpl_offer", ["Мария", "Маникюр с покрытием гель-лак", "10"]),
        (Step.WIN_BACK, "tpl_win_back", ["Мария", "Маникюр с покрытием гель-лак", "20"]),
    ],
)
def test_the_cloud_api_gets_the_steps_approved_template(
    gateway: FakeGateway, step: Step, template: str, parameters: list[str]
) -> None:
    # given the approved templates with two variables for gentle and three for the discounted steps
    gateway.configure(cloud_token="cloud-token", cloud_templates={"tpl_gentle": 2, "tpl_offer": 3, "tpl_win_back": 3})
    with cloud_sender(gateway.url) as sender:
        result = sender.send(request(11, step=step))
    [received] = gateway.messages()
    assert received["kind"] == "cloud_api"
    assert received["phone_number_id"] == "1234567890"
    assert (received["template"], received["language"], received["parameters"]) == (template, "ru", parameters)
    assert received["idempotency_key"] == "reactivation:962302:11"
    assert result.provider_message_id == received["id"]
    assert result.template_name == template
    assert result.sent_at == NOW


def test_template_parameters_are_cleaned_and_never_empty() -> None:
    messy = request(1, first_name="  Анна\tМария \n", service_title="Стрижка     мужская" + "!" * 300)
    name, service = template_parameters(messy)
    assert name == "Анна Мария"
    assert service.startswith("Стрижка мужская!") and len(service) == 100
    assert template_parameters(request(1, first_name=None, service_title="  ")) == ["Уважаемый клиент", "наши услуги"]
    assert template_parameters(request(1, step=Step.OFFER, discount_percent=0))[2] == "0"


@pytest.mark.parametrize(
    ("code", "status", "outcome", "reason"),
    [
        (131049, 400, SendSkipped, SkipReason.MARKETING_LIMIT),
        (131026, 400, SendSkipped, SkipReason.UNDELIVERABLE),
        (131047, 400, SendSkipped, SkipReason.REENGAGEMENT_REQUIRED),
        (131050, 400, SendSkipped, SkipReason.MARKETING_OPT_OUT),
        (130472, 400, SendSkipped, SkipReason.EXPERIMENT),
    ],
)
def test_meta_recipient_errors_are_skips_with_their_reason(
    code: int, status: int, outcome: type[Exception], reason: SkipReason
) -> None:
    body = {"error": {"code": code, "message": f"(#{code}) something", "error_data": {"details": "for +79001234567"}}}
    error = classify_cloud_api_error(status, body)
    assert isinstance(error, SendSkipped)
    assert error.reason is reason
    assert error.code == str(code)
    assert "79001234567" not in str(error)


@pytest.mark.parametrize(
    ("code", "status", "retry_after"),
    [(4, 400, None), (80007, 400, None), (130429, 400, None), (131056, 400, 6.0), (131000, 500, None), (2, 503, None)],
)
def test_meta_throttling_and_outages_are_transient(code: int, status: int, retry_after: float | None) -> None:
    error = classify_cloud_api_error(status, {"error": {"code": code, "message": "slow down"}})
    assert isinstance(error, TransientSendError)
    assert error.retry_after == retry_after


@pytest.mark.parametrize(
    ("code", "status", "affects_all"),
    [
        (190, 401, True),
        (0, 401, True),
        (10, 403, True),
        (200, 403, True),
        (132001, 404, True),
        (132015, 400, True),
        (131042, 400, True),
        (368, 400, True),
        (100, 400, False),
        (131009, 400, False),
        (132000, 400, False),
        (131048, 400, False),
        (131021, 400, False),
    ],
)
def test_meta_configuration_and_request_errors_are_permanent(code: int, status: int, affects_all: bool) -> None:
    error = classify_cloud_api_error(status, {"error": {"code": code, "message": "no"}})
    assert isinstance(error, PermanentSendError)
    assert error.affects_all_messages is affects_all


def test_meta_errors_without_a_code_fall_back_to_the_http_status() -> None:
    assert isinstance(classify_cloud_api_error(429, None, retry_after=3), TransientSendError)
    assert isinstance(classify_cloud_api_error(502, "<html>"), TransientSendError)
    assert isinstance(classify_cloud_api_error(400, {"error": "x"}), PermanentSendError)
    assert isinstance(classify_cloud_api_error(500, {"error": {"code": 999999}}), TransientSendError)
    assert isinstance(classify_cloud_api_error(400, {"error": {"code": "131049"}}), SendSkipped)


def test_the_per_user_marketing_limit_is_a_skip_through_the_api(gateway: FakeGateway) -> None:
    gateway.configure(cloud_fail_next=[{"code": 131049, "status": 400, "message": "healthy ecosystem engagement"}])
    with cloud_sender(gateway.url) as sender:
        with pytest.raises(SendSkipped) as caught:
            sender.send(request(1))
        assert caught.value.reason is SkipReason.MARKETING_LIMIT
        assert caught.value.status_code == 400
        # the next client is not affected
        sender.send(request(2, phone="+79009998877"))
    assert [m["phone"] for m in gateway.messages()] == ["+79009998877"]


def test_the_pair_rate_limit_through_the_api_is_transient_with_a_hint(gateway: FakeGateway) -> None:
    gateway.configure(cloud_fail_phones={PHONE: {"code": 131056, "status": 400, "message": "pair rate limit hit"}})
    with cloud_sender(gateway.url) as sender, pytest.raises(TransientSendError) as caught:
        sender.send(request(1))
    assert caught.value.retry_after == 6.0


def test_an_expired_token_is_permanent_for_every_message(gateway: FakeGateway) -> None:
    gateway.configure(cloud_token="the-right-one")
    with cloud_sender(gateway.url, token="expired") as sender, pytest.raises(PermanentSendError) as caught:
        sender.send(request(1))
    assert (caught.value.code, caught.value.affects_all_messages) == ("190", True)


def test_a_template_meta_does_not_know_is_permanent_for_every_message(gateway: FakeGateway) -> None:
    gateway.configure(cloud_templates={"another_template": 2})
    with cloud_sender(gateway.url) as sender, pytest.raises(PermanentSendError) as caught:
        sender.send(request(1))
    assert (caught.value.code, caught.value.affects_all_messages) == ("132001", True)


def test_a_cloud_api_timeout_is_an_unknown_outcome_because_meta_has_no_idempotency_key(gateway: FakeGateway) -> None:
    gateway.configure(latency=0.5)
    with cloud_sender(gateway.url, timeout=0.1) as sender, pytest.raises(SendOutcomeUnknown, match="ReadTimeout"):
        sender.send(request(1))


def test_a_cloud_api_refused_connection_is_transient(gateway: FakeGateway) -> None:
    gateway.configure(down="refuse")
    with cloud_sender(gateway.url) as sender, pytest.raises(TransientSendError, match="could not connect"):
        sender.send(request(1))


def test_a_cloud_api_answer_without_a_message_id_is_unknown() -> None:
    client = httpx.Client(transport=httpx.MockTransport(lambda _r: httpx.Response(200, json={"messages": []})))
    sender = CloudApiSender(
        base_url="http://graph.test/v21.0", token="t", phone_number_id="1", templates=TEMPLATES, http_client=client
    )
    with pytest.raises(SendOutcomeUnknown):
        sender.send(request(1))


def test_a_cloud_api_sender_needs_its_settings() -> None:
    with pytest.raises(ValueError, match="TOKEN"):
        CloudApiSender(base_url="http://x", token="", phone_number_id="1", templates=TEMPLATES)
    with pytest.raises(ValueError, match="PHONE_NUMBER_ID"):
        CloudApiSender(base_url="http://x", token="t", phone_number_id="abc", templates=TEMPLATES)


# --- outbox --------------------------------------------------------------------------------------------------------


def test_the_outbox_appends_one_json_line_per_message(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "outbox.jsonl"
    sender = OutboxSender(path, clock=clock)
    result = sender.send(request(5, step=Step.OFFER))
    sender.send(request(6))
    records = list(read_outbox(path))
    assert [r["history_id"] for r in records] == [5, 6]
    assert records[0] == {
        "phone": PHONE,
        "message": "Мария, добрый день! Давно не виделись, ждём вас на маникюр.",
        "history_id": 5,
        "company_id": 962302,
        "step": 2,
        "message_type": "offer",
        "idempotency_key": "reactivation:962302:5",
        "sender_id": None,
        "sent_at": "2025-04-15T07:00:00+00:00",
    }
    assert (result.provider, result.provider_message_id) == ("outbox", "outbox:reactivation:962302:5")


_WRITER = """
import sys
from reactivation.delivery.senders import OutboxSender, SendRequest
sender = OutboxSender(sys.argv[1])
for n in range(int(sys.argv[2]), int(sys.argv[2]) + 200):
    sender.send(SendRequest(company_id=1, history_id=n, phone="+79001234567", message="ж" * 250 + str(n),
                            idempotency_key=f"k{n}", step=1))
"""


@pytest.mark.subprocess
def test_concurrent_writers_never_interleave_lines(tmp_path: Path) -> None:
    # given two processes and four threads appending to the same outbox at once
    path = tmp_path / "outbox.jsonl"
    processes = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(start)], cwd=Path(__file__).parents[2])
        for start in (10_000, 20_000)
    ]
    sender = OutboxSender(path)

    def write(start: int) -> None:
        for n in range(start, start + 200):
            sender.send(request(n, message="ж" * 250 + str(n)))

    threads = [threading.Thread(target=write, args=(start,)) for start in (0, 1000, 2000, 3000)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for process in processes:
        assert process.wait(timeout=60) == 0
    # then every line is one whole record
    reading = read_outbox(path)
    assert reading.bad_lines == 0
    assert len(reading) == 1200
    assert all(r["message"] == "ж" * 250 + str(r["history_id"]) for r in reading)


def test_an_unwritable_outbox_is_permanent(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(PermanentSendError, match="outbox: cannot write") as caught:
        OutboxSender(blocker / "outbox.jsonl").send(request(1))
    assert caught.value.affects_all_messages


def test_reading_an_outbox_counts_broken_lines(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    assert len(read_outbox(path)) == 0
    path.write_text(json.dumps({"history_id": 1}) + "\n{broken\n[1, 2]\n\n" + json.dumps({"history_id": 2}) + "\n")
    reading = read_outbox(path)
    assert [r["history_id"] for r in reading] == [1, 2]
    assert reading.bad_lines == 2


# --- choosing a sender ---------------------------------------------------------------------------------------------


def test_make_sender_follows_the_provider_setting(tmp_path: Path, gateway: FakeGateway) -> None:
    outbox = make_sender(load_settings(whatsapp_outbox_path=tmp_path / "o.jsonl", _env_file=None))
    assert isinstance(outbox, OutboxSender)
    assert outbox.path == tmp_path / "o.jsonl"

    gateway.configure(token="gw-token")
    settings = load_settings(
        whatsapp_provider="gateway",
        whatsapp_gateway_url=gateway.url + "/",
        whatsapp_gateway_token="gw-token",
        whatsapp_timeout_seconds=3,
        _env_file=None,
    )
    with make_sender(settings, clock=clock) as sender:
        assert isinstance(sender, GatewaySender)
        sender.send(request(1))
    assert len(gateway.messages()) == 1

    gateway.configure(cloud_token="c-token")
    settings = load_settings(
        whatsapp_provider="cloud_api",
        whatsapp_cloud_api_url=gateway.url + "/v21.0",
        whatsapp_cloud_api_token="c-token",
        whatsapp_cloud_phone_number_id="555",
        whatsapp_cloud_template_offer="salon_offer",
        whatsapp_cloud_template_language="ru_RU",
        _env_file=None,
    )
    with make_sender(settings) as sender:
        assert isinstance(sender, CloudApiSender)
        sender.send(request(2, step=Step.OFFER))
    cloud = gateway.messages()[-1]
    assert (cloud["template"], cloud["language"], cloud["phone_number_id"]) == ("salon_offer", "ru_RU", "555")


# --- Retry-After ---------------------------------------------------------------------------------------------------


def test_retry_after_takes_seconds_or_a_date_and_is_bounded() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("99999") == 3600.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    in_30s = (NOW + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert parse_retry_after(in_30s, now=NOW) == 30.0
