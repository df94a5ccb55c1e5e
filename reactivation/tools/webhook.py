"""The delivery-status webhook receiver: a small ASGI app (Starlette, served by uvicorn) that takes what WhatsApp
providers report about the messages they accepted and applies it to the history rows.

- `GET /webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=T&hub.challenge=C`: Meta's subscription check;
  answers C when T is WHATSAPP_WEBHOOK_VERIFY_TOKEN, 403 otherwise.
- `POST /webhooks/whatsapp`: Meta's status webhook, signed with the app secret (`X-Hub-Signature-256`).
- `POST /webhooks/gateway`: the gateway's `{"id", "status", "error"}`, with `Authorization: Bearer
  WHATSAPP_GATEWAY_WEBHOOK_TOKEN`.
- `GET /healthz`: the process is up.

A bad or missing signature or token gets 401 and changes nothing; a body that is not a report gets 400; a report
about a message this product does not know is logged and acknowledged (200), as is a replay. The receiver only
writes PostgreSQL (one transaction per post) and enqueues work (withdrawing the AI admin's pendingAction of a
failed message), so it answers within milliseconds; providers retry what is not acknowledged.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from reactivation.core.vocabulary import ChainStep
from reactivation.delivery.webhooks import (
    MalformedReport,
    StatusReport,
    bearer_ok,
    gateway_report,
    meta_reports,
    meta_signature_ok,
)
from reactivation.flow.delivery_status import Applied, apply_report
from reactivation.storage.db import after_commit

if TYPE_CHECKING:
    from reactivation.runtime import Runtime

log = logging.getLogger(__name__)

# Meta's posts are a few kilobytes; anything this large is not one.
MAX_BODY_BYTES = 1_000_000

# Sends the work an applied report calls for: withdrawing a failed message's hand-over, resuming a recovered chain.
FollowUp = Callable[[Applied], None]
Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


def serve(rt: Runtime, *, host: str, port: int) -> None:
    """Run the receiver under uvicorn until stopped (SIGINT/SIGTERM); failed messages' withdraws go to the broker."""
    import uvicorn

    from celery_app.app import configure
    from celery_app.tasks import chain_from, withdraw_handover

    configure(rt.settings)

    def follow_up(applied: Applied) -> None:
        assert applied.company_id is not None and applied.history_id is not None
        if applied.withdraw is not None:
            withdraw_handover.apply_async(args=(applied.company_id, applied.history_id, applied.withdraw))
        if applied.resume:
            chain_from(ChainStep.PERSIST_HISTORY, applied.company_id, applied.history_id).apply_async()

    app = create_app(rt, follow_up=follow_up)
    log.info("webhook receiver listening", extra={"host": host, "port": port})
    # The product's own key=value logging stays in charge; uvicorn's access log would only repeat each request.
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, server_header=False)


def create_app(rt: Runtime, *, follow_up: FollowUp, clock: Clock = _utcnow) -> Starlette:
    """The receiver's ASGI app over this runtime's database; `follow_up` sends the tasks an applied report calls
    for (withdrawing a hand-over, resuming a chain)."""
    settings = rt.settings
    app_secret = _secret(settings.whatsapp_app_secret)
    verify_token = _secret(settings.whatsapp_webhook_verify_token)
    gateway_token = _secret(settings.whatsapp_gateway_webhook_token)

    def apply(reports: list[StatusReport]) -> dict[str, int]:
        counts = {"received": len(reports), "applied": 0, "duplicate": 0, "unknown_message": 0, "ignored": 0}
        now = clock()
        with rt.session() as session:
            for report in reports:
                applied = apply_report(session, report, now=now)
                counts[applied.outcome] += 1
                if applied.withdraw is not None:
                    # Sent before the commit on purpose: if the broker is down the post fails (500) and the
                    # provider retries it whole; the withdraw reads nothing this transaction writes.
                    follow_up(applied)
                elif applied.resume:
                    # The resumed chain reads the row this transaction recovers: it leaves after the commit.
                    after_commit(session, partial(follow_up, applied))
        return counts

    async def verify(request: Request) -> Response:
        params = request.query_params
        token = params.get("hub.verify_token")
        if params.get("hub.mode") == "subscribe" and verify_token and token and _same(token, verify_token):
            return PlainTextResponse(params.get("hub.challenge", ""))
        log.warning("webhook verification refused")
        return PlainTextResponse("forbidden", status_code=403)

    async def meta(request: Request) -> Response:
        raw = await _body(request)
        if raw is None:
            return _error(413, "body too large")
        if not meta_signature_ok(app_secret, raw, request.headers.get("x-hub-signature-256")):
            log.warning("whatsapp webhook refused: bad or missing signature")
            return _error(401, "bad or missing X-Hub-Signature-256")
        return await _reports(raw, meta_reports)

    async def gateway(request: Request) -> Response:
        raw = await _body(request)
        if raw is None:
            return _error(413, "body too large")
        if not bearer_ok(gateway_token, request.headers.get("authorization")):
            log.warning("gateway webhook refused: bad or missing token")
            return _error(401, "bad or missing bearer token")
        return await _reports(raw, lambda body: [gateway_report(body)])

    async def _reports(raw: bytes, parse: Callable[[Any], list[StatusReport]]) -> Response:
        try:
            reports = parse(json.loads(raw))
        except (ValueError, UnicodeDecodeError, MalformedReport) as exc:
            return _error(400, f"not a status report: {exc}")
        counts = await run_in_threadpool(apply, reports)
        return JSONResponse(counts)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    if not app_secret and not gateway_token:
        log.warning("neither WHATSAPP_APP_SECRET nor WHATSAPP_GATEWAY_WEBHOOK_TOKEN is set: every report is refused")
    return Starlette(
        routes=[
            Route("/webhooks/whatsapp", verify, methods=["GET"]),
            Route("/webhooks/whatsapp", meta, methods=["POST"]),
            Route("/webhooks/gateway", gateway, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


async def _body(request: Request) -> bytes | None:
    """The raw body (the signature is over these bytes), or None when it is larger than MAX_BODY_BYTES."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)
