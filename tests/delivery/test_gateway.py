"""The gateway sender against the local fake gateway (in this process and in its own), and mocked answers."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from reactivation.delivery.contract import idempotency_key
from reactivation.delivery.errors import PermanentSendError, SenderRefused, SendOutcomeUnknown, TransientSendError
from reactivation.delivery.gateway import GatewaySender
from tests.delivery.sample_requests import NOW, PHONE, clock, request
from tests.fake_gateway import FakeGateway, FakeGatewayProcess


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


def mock_gateway(handler: Callable[[httpx.Request], httpx.Response]) -> GatewaySender:
    return GatewaySender("http://gateway.test", http_client=httpx.Client(transport=httpx.MockTransport(handler)))


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


def test_a_sender_the_gateway_does_not_know_is_refused(gateway: FakeGateway, gateway_sender: GatewaySender) -> None:
    gateway.configure(senders={"salon-1"})
    with pytest.raises(SenderRefused) as caught:
        gateway_sender.send(request(1, sender_id="salon-2"))
    assert (caught.value.sender_id, caught.value.status_code) == ("salon-2", 404)
    # the salon's own session, and the default one, still send
    gateway_sender.send(request(2, sender_id="salon-1"))
    gateway_sender.send(request(3))
    assert [m["sender_id"] for m in gateway.messages()] == ["salon-1", None]
    assert gateway_sender.sender_key("salon-1") == "gateway:salon-1"
    assert gateway_sender.sender_key(None) == "gateway:default"
    assert gateway_sender.idempotent
