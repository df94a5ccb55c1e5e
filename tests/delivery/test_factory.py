"""Choosing and configuring the sender the settings name."""

from __future__ import annotations

from pathlib import Path

from reactivation.core.settings import load_settings
from reactivation.core.vocabulary import Step
from reactivation.delivery.cloud_api import CloudApiSender
from reactivation.delivery.factory import make_sender
from reactivation.delivery.gateway import GatewaySender
from reactivation.delivery.outbox import OutboxSender
from tests.delivery.sample_requests import clock, request
from tests.fake_gateway import FakeGateway


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
        whatsapp_cloud_api_url=gateway.url,
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
    # the Graph API version is a setting of its own, by default one Meta supports through 2027
    assert cloud["version"] == "v25.0"
