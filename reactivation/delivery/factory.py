"""Choosing the sender the settings name (WHATSAPP_PROVIDER) and configuring it.

Apart from `contract`, because it imports every sender and every sender imports the contract.
"""

from __future__ import annotations

import httpx

from reactivation.core.settings import Settings
from reactivation.core.vocabulary import Step
from reactivation.delivery.cloud_api import CloudApiSender, CloudTemplates
from reactivation.delivery.contract import Clock, Sender
from reactivation.delivery.gateway import GatewaySender
from reactivation.delivery.outbox import OutboxSender

# Providers that de-duplicate by idempotency key: a message whose outcome is unknown is sent again, with the same key.
IDEMPOTENT_PROVIDERS = frozenset(
    sender.provider for sender in (GatewaySender, CloudApiSender, OutboxSender) if sender.idempotent
)


def make_sender(settings: Settings, *, http_client: httpx.Client | None = None, clock: Clock | None = None) -> Sender:
    """The sender WHATSAPP_PROVIDER names, configured from settings. One per process; close it at shutdown."""
    provider = settings.whatsapp_provider
    if provider == "outbox":
        return OutboxSender(settings.whatsapp_outbox_path, clock=clock)
    if provider == "gateway":
        if not settings.whatsapp_gateway_url:
            raise ValueError("WHATSAPP_GATEWAY_URL is required when WHATSAPP_PROVIDER=gateway")
        token = settings.whatsapp_gateway_token.get_secret_value() if settings.whatsapp_gateway_token else None
        return GatewaySender(
            settings.whatsapp_gateway_url,
            token=token or None,
            timeout_seconds=settings.whatsapp_timeout_seconds,
            http_client=http_client,
            clock=clock,
        )
    if provider == "cloud_api":
        token = settings.whatsapp_cloud_api_token.get_secret_value() if settings.whatsapp_cloud_api_token else ""
        return CloudApiSender(
            base_url=settings.whatsapp_cloud_api_url,
            api_version=settings.whatsapp_cloud_api_version,
            token=token,
            phone_number_id=settings.whatsapp_cloud_phone_number_id,
            templates=CloudTemplates(
                gentle=settings.whatsapp_cloud_template_gentle,
                offer=settings.whatsapp_cloud_template_offer,
                win_back=settings.whatsapp_cloud_template_win_back,
                language=settings.whatsapp_cloud_template_language,
                texts={
                    Step.GENTLE: settings.whatsapp_cloud_template_gentle_text,
                    Step.OFFER: settings.whatsapp_cloud_template_offer_text,
                    Step.WIN_BACK: settings.whatsapp_cloud_template_win_back_text,
                },
            ),
            timeout_seconds=settings.whatsapp_timeout_seconds,
            http_client=http_client,
            clock=clock,
        )
    raise ValueError(f"unknown WHATSAPP_PROVIDER {provider!r}; expected gateway, cloud_api or outbox")
