"""The Cloud API sender against the local fake gateway's Cloud API, and what Meta's error codes mean."""

from __future__ import annotations

import httpx
import pytest

from reactivation.core.vocabulary import SkipReason, Step
from reactivation.delivery.cloud_api import (
    CloudApiSender,
    CloudTemplates,
    classify_cloud_api_error,
    template_parameters,
)
from reactivation.delivery.errors import (
    PermanentSendError,
    SenderMissing,
    SenderRefused,
    SendOutcomeUnknown,
    SendSkipped,
    TemplateRejected,
    TransientSendError,
)
from tests.delivery.sample_requests import NOW, PHONE, clock, request
from tests.fake_gateway import FakeGateway

TEXTS = {
    Step.GENTLE: "{{1}}, добрый день! Ждём вас снова: {{2}}.",
    Step.OFFER: "{{1}}, скидка {{3}}% на услугу: {{2}}.",
    Step.WIN_BACK: "{{1}}, скидка {{3}}% для вас: {{2}}. {{1}}, ждём!",
}
TEMPLATES = CloudTemplates(gentle="tpl_gentle", offer="tpl_offer", win_back="tpl_win_back", language="ru", texts=TEXTS)


def cloud_sender(
    base_url: str, *, token: str = "cloud-token", timeout: float = 5.0, phone_number_id: str | None = "1234567890"
) -> CloudApiSender:
    return CloudApiSender(
        base_url=base_url,
        api_version="v25.0",
        token=token,
        phone_number_id=phone_number_id,
        templates=TEMPLATES,
        timeout_seconds=timeout,
        clock=clock,
    )


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
    assert (received["phone_number_id"], received["version"]) == ("1234567890", "v25.0")
    assert (received["template"], received["language"], received["parameters"]) == (template, "ru", parameters)
    assert received["idempotency_key"] == "reactivation:962302:11"
    assert result.provider_message_id == received["id"]
    assert result.template_name == template
    assert result.sent_at == NOW
    # and what the client received is written down as the approved body filled with exactly those parameters
    assert result.sent_text == TEMPLATES.render(step, parameters)


def test_template_parameters_are_cleaned_and_never_empty() -> None:
    name, service = template_parameters(
        Step.GENTLE, first_name="  Анна\tМария \n", service_title="Стрижка     мужская" + "!" * 300
    )
    assert name == "Анна Мария"
    assert service.startswith("Стрижка мужская!") and len(service) == 100
    assert template_parameters(Step.GENTLE, first_name=None, service_title="  ") == [
        "Уважаемый клиент",
        "наши услуги",
    ]
    assert template_parameters(Step.OFFER, first_name="А", service_title="Б", discount=0)[2] == "0"


def test_the_approved_body_is_filled_as_the_request_fills_it() -> None:
    with cloud_sender("http://graph.test") as sender:
        approved = sender.approved_message(Step.WIN_BACK, first_name="Ольга", service_title="Стрижка мужская")
    assert approved.text == "Ольга, скидка 20% для вас: Стрижка мужская. Ольга, ждём!"
    assert (approved.template_name, approved.language) == ("tpl_win_back", "ru")
    without_body = CloudTemplates(gentle="g", offer="o", win_back="w")
    with pytest.raises(ValueError, match="WHATSAPP_CLOUD_TEMPLATE_GENTLE_TEXT"):
        without_body.render(Step.GENTLE, ["a", "b"])
    with pytest.raises(ValueError, match=r"\{\{3\}\}"):
        CloudTemplates(gentle="g", offer="o", win_back="w", texts={Step.GENTLE: "{{3}}"}).render(Step.GENTLE, ["a"])


def test_each_salon_sends_from_its_own_phone_number_id(gateway: FakeGateway) -> None:
    with cloud_sender(gateway.url) as sender:
        sender.send(request(1, sender_id="2222222222"))
        sender.send(request(2, phone="+79009998877"))
        assert sender.sender_key("2222222222") == "cloud_api:2222222222"
        assert sender.sender_key(None) == "cloud_api:1234567890"
    assert [m["phone_number_id"] for m in gateway.messages()] == ["2222222222", "1234567890"]


def test_a_salon_without_a_sender_has_none_to_send_from(gateway: FakeGateway) -> None:
    with cloud_sender(gateway.url, phone_number_id=None) as sender:
        with pytest.raises(SenderMissing, match="no sender_id"):
            sender.sender_key(None)
        with pytest.raises(SenderMissing, match="not a phone number id"):
            sender.sender_key("salon-1")
        assert sender.sender_key("42") == "cloud_api:42"
    assert gateway.messages() == []


def test_a_phone_number_id_meta_does_not_know_is_a_refused_sender(gateway: FakeGateway) -> None:
    gateway.configure(cloud_senders={"1234567890"})
    with cloud_sender(gateway.url) as sender, pytest.raises(SenderRefused) as caught:
        sender.send(request(1, sender_id="999"))
    assert (caught.value.code, caught.value.sender_id) == ("100", "999")


@pytest.mark.parametrize("code", [132000, 132012, 132005, 131047])
def test_a_template_meta_refuses_as_configured_names_the_setting_to_fix(gateway: FakeGateway, code: int) -> None:
    gateway.configure(cloud_fail_next=[{"code": code, "status": 400, "message": "template does not fit"}])
    with cloud_sender(gateway.url) as sender, pytest.raises(TemplateRejected) as caught:
        sender.send(request(1, step=Step.OFFER))
    assert caught.value.setting == "WHATSAPP_CLOUD_TEMPLATE_OFFER"
    assert caught.value.affects_all_messages and caught.value.code == str(code)


@pytest.mark.parametrize(
    ("code", "status", "outcome", "reason"),
    [
        (131049, 400, SendSkipped, SkipReason.MARKETING_LIMIT),
        (131026, 400, SendSkipped, SkipReason.UNDELIVERABLE),
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
        (200, 403, True),
        (132001, 404, True),
        (132015, 400, True),
        (131042, 400, True),
        (368, 400, True),
        (100, 400, False),
        (131009, 400, False),
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
        base_url="http://graph.test",
        api_version="v25.0",
        token="t",
        phone_number_id="1",
        templates=TEMPLATES,
        http_client=client,
    )
    with pytest.raises(SendOutcomeUnknown):
        sender.send(request(1))


def test_a_cloud_api_sender_needs_its_settings() -> None:
    with pytest.raises(ValueError, match="TOKEN"):
        CloudApiSender(base_url="http://x", api_version="v25.0", token="", phone_number_id="1", templates=TEMPLATES)
    with pytest.raises(ValueError, match="PHONE_NUMBER_ID"):
        CloudApiSender(base_url="http://x", api_version="v25.0", token="t", phone_number_id="abc", templates=TEMPLATES)
