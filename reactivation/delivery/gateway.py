"""Sending through a Baileys-style WhatsApp gateway, which de-duplicates by idempotency key."""

from __future__ import annotations

from typing import Any

import httpx

from reactivation.delivery.contract import Clock, SendRequest, SendResult
from reactivation.delivery.errors import (
    PermanentSendError,
    SenderRefused,
    SendError,
    SendOutcomeUnknown,
    TransientSendError,
)
from reactivation.delivery.http_sender import HttpSender, body_excerpt, json_body, parse_retry_after, usable_message_id


class GatewaySender(HttpSender):
    """A Baileys-style gateway: POST {url}/send {"phone", "message", "idempotency_key"} -> 2xx {"id": ...}.

    The gateway is expected to de-duplicate by `idempotency_key` (the same key also goes in an
    `Idempotency-Key` header); that is what makes a retry after a read timeout safe, so timeouts and dropped
    connections are transient here. A 2xx answer without a usable id (an HTML page from a misrouted proxy, an
    empty body) is `SendOutcomeUnknown`: 2xx claims acceptance, so retrying could double the message, but without
    an id nothing proves it was sent, so it is not recorded as sent either. 409 with an id is a duplicate the
    gateway recognised: success, `duplicate=True`.

    Each salon sends from its own session, named by `sender_id` in the body (none: the gateway's default one). A
    403 or 404 to a request that names a sender is the gateway refusing that sender (unknown, not connected).
    """

    provider = "gateway"
    idempotent = True

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout_seconds: float = 15.0,
        http_client: httpx.Client | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(timeout_seconds=timeout_seconds, http_client=http_client, clock=clock)
        if not url or not url.startswith(("http://", "https://")):
            raise ValueError("WHATSAPP_GATEWAY_URL must be an http(s) URL")
        self._url = url.rstrip("/") + "/send"
        self._token = token

    def payload(self, request: SendRequest) -> dict[str, Any]:
        """The JSON body: phone, message, idempotency key, and the salon's sender number when it has one."""
        payload: dict[str, Any] = {
            "phone": request.phone,
            "message": request.message,
            "idempotency_key": request.idempotency_key,
        }
        if request.sender_id:
            payload["sender_id"] = request.sender_id
        return payload

    def _headers(self, request: SendRequest) -> dict[str, str]:
        headers = {"Idempotency-Key": request.idempotency_key}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def _maybe_sent(self, request: SendRequest, exc: httpx.TransportError) -> SendError:
        return TransientSendError(
            f"gateway: no answer ({type(exc).__name__}); safe to retry with the same idempotency key",
            provider=self.provider,
            maybe_delivered=True,
        )

    def _interpret(self, request: SendRequest, response: httpx.Response) -> SendResult:
        status = response.status_code
        body = json_body(response)
        message_id = usable_message_id(body.get("id")) if isinstance(body, dict) else None
        if 200 <= status < 300 or status == 409:
            if message_id is None:
                raise self._answer_error(
                    SendOutcomeUnknown,
                    f"gateway: HTTP {status} without a usable message id: {body_excerpt(response)}",
                    status,
                )
            duplicate = status == 409 or (isinstance(body, dict) and body.get("duplicate") is True)
            return SendResult(
                provider=self.provider, provider_message_id=message_id, sent_at=self._clock(), duplicate=duplicate
            )
        text = f"gateway: HTTP {status}: {body_excerpt(response)}"
        if status in (403, 404) and request.sender_id:
            raise self._answer_error(SenderRefused, text, status, sender_id=request.sender_id)
        if status in (408, 425, 429) or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise self._answer_error(TransientSendError, text, status, retry_after=retry_after)
        raise self._answer_error(PermanentSendError, text, status, affects_all_messages=status in (401, 403, 404))
