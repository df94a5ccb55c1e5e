"""The delivery-status webhook receiver, served by uvicorn on 127.0.0.1, spoken to over HTTP: Meta's handshake and
signed posts, the gateway's bearer posts, replays, statuses out of order, and what a failed delivery does to the
row, the phone and the AI admin's pendingAction."""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from reactivation.audience.selection import recheck_client
from reactivation.core.settings import Settings, load_settings
from reactivation.core.vocabulary import ChainStep, SkipReason
from reactivation.flow import pipeline, sweeps
from reactivation.flow.delivery_status import Applied
from reactivation.handover.admin_handover import read_pending_action
from reactivation.runtime import Runtime
from reactivation.storage.models import Client, ReactivationHistory
from reactivation.tools.webhook import create_app
from tests.chains import claim, rows, run_chain
from tests.fake_gateway import FakeGateway
from tests.salon import Salon, build_salon
from tests.webhook_server import meta_status, serving, signed

SECRET = "app-secret"
VERIFY = "verify-me"
GATEWAY_HOOK = "gw-hook"
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Receiver:
    """The running receiver, the runtime behind it and the salon whose messages it hears about."""

    url: str
    rt: Runtime
    salon: Salon
    engine: Engine
    http: httpx.Client

    def row(self, history_id: int) -> ReactivationHistory:
        return next(r for r in rows(self.engine, self.salon.company_id) if r.id == history_id)

    def meta(self, body: object, *, secret: str | None = SECRET) -> httpx.Response:
        raw, headers = signed(body, secret or "")
        if secret is None:
            headers.pop("X-Hub-Signature-256")
        return self.http.post(f"{self.url}/webhooks/whatsapp", content=raw, headers=headers)

    def pending(self, row: ReactivationHistory) -> dict[str, object] | None:
        return read_pending_action(
            self.rt.redis, prefix=self.rt.settings.redis_key_prefix, company_id=row.company_id, phone=row.phone or ""
        )


def receiver_settings(base: Settings, gateway: FakeGateway, provider: str) -> Settings:
    return load_settings(
        **{
            **base.model_dump(),
            "whatsapp_provider": provider,
            "whatsapp_gateway_url": gateway.url,
            "whatsapp_cloud_api_url": gateway.url,
            "whatsapp_cloud_api_token": "c-token",
            "whatsapp_cloud_phone_number_id": "555",
            "whatsapp_app_secret": SECRET,
            "whatsapp_webhook_verify_token": VERIFY,
            "whatsapp_gateway_webhook_token": GATEWAY_HOOK,
        },
        _env_file=None,
    )


def running_receiver(settings: Settings, engine: Engine, *, due: int) -> Iterator[Receiver]:
    """A salon whose `due` messages went out through the settings' provider, and the receiver listening for their
    statuses."""
    salon = build_salon(engine, due=due, extras=False)
    rt = Runtime(settings)
    try:
        for history_id in claim(rt, salon):
            assert run_chain(rt, salon, history_id)[-1] == pipeline.Stop("done")

        def follow_up(applied: Applied) -> None:
            # What the enqueued tasks do, run here at once: the test sees their effect when the answer comes.
            assert applied.company_id is not None and applied.history_id is not None
            ids = {"company_id": applied.company_id, "history_id": applied.history_id}
            if applied.withdraw is not None:
                pipeline.withdraw_failed_handover(rt, **ids, resend=applied.withdraw)
            if applied.resume:
                for step in (pipeline.persist_history, pipeline.save_handover):
                    step(rt, **ids, now=salon.now + timedelta(hours=1))

        app = create_app(rt, follow_up=follow_up, clock=lambda: salon.now + timedelta(hours=1))
        with serving(app) as url, httpx.Client(timeout=10, trust_env=False) as http:
            yield Receiver(url, rt, salon, engine, http)
    finally:
        rt.dispose()


@pytest.fixture
def cloud(committed_settings: Settings, committed_engine: Engine, gateway: FakeGateway) -> Iterator[Receiver]:
    gateway.configure(cloud_token="c-token")
    settings = receiver_settings(committed_settings, gateway, "cloud_api")
    yield from running_receiver(settings, committed_engine, due=3)


@pytest.fixture
def via_gateway(committed_settings: Settings, committed_engine: Engine, gateway: FakeGateway) -> Iterator[Receiver]:
    settings = receiver_settings(committed_settings, gateway, "gateway")
    yield from running_receiver(settings, committed_engine, due=2)


def at(receiver: Receiver, minutes: int) -> int:
    """Unix seconds `minutes` after the salon's send time: the provider's clock in these reports."""
    return int((receiver.salon.now + timedelta(minutes=minutes)).timestamp())


def instant(receiver: Receiver, minutes: int) -> datetime:
    return receiver.salon.now + timedelta(minutes=minutes)


# --- Meta's handshake and signatures ------------------------------------------------------------------------------


def test_the_verification_handshake_answers_the_challenge_only_for_the_verify_token(cloud: Receiver) -> None:
    url = f"{cloud.url}/webhooks/whatsapp"
    good = cloud.http.get(
        url, params={"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "1158201444"}
    )
    assert (good.status_code, good.text) == (200, "1158201444")
    for params in (
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.verify_token": VERIFY, "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.challenge": "1"},
    ):
        assert cloud.http.get(url, params=params).status_code == 403
    assert cloud.http.get(f"{cloud.url}/healthz").json() == {"ok": True}


def test_an_unsigned_or_wrongly_signed_post_is_refused_and_changes_nothing(cloud: Receiver) -> None:
    first = rows(cloud.engine, cloud.salon.company_id)[0]
    body = meta_status(first.provider_message_id or "", "delivered", at=at(cloud, 1))
    assert cloud.meta(body, secret=None).status_code == 401
    assert cloud.meta(body, secret="not-the-app-secret").status_code == 401
    assert cloud.row(first.id).delivered_at is None
    # When Meta signs it
    answer = cloud.meta(body)
    # Then it is applied
    assert answer.status_code == 200 and answer.json()["applied"] == 1
    assert cloud.row(first.id).delivered_at == instant(cloud, 1)


def test_a_malformed_body_is_a_400_and_an_unknown_message_is_acknowledged(cloud: Receiver) -> None:
    raw, headers = signed({"entry": "not a list"}, SECRET)
    assert cloud.http.post(f"{cloud.url}/webhooks/whatsapp", content=raw, headers=headers).status_code == 400
    not_json = b"{not json"
    headers["X-Hub-Signature-256"] = "sha256=" + hmac.new(SECRET.encode(), not_json, hashlib.sha256).hexdigest()
    assert cloud.http.post(f"{cloud.url}/webhooks/whatsapp", content=not_json, headers=headers).status_code == 400
    unknown = cloud.meta(meta_status("wamid.NOT-OURS", "delivered", at=at(cloud, 1)))
    assert unknown.status_code == 200 and unknown.json()["unknown_message"] == 1


def test_a_replayed_status_changes_nothing(cloud: Receiver) -> None:
    first = rows(cloud.engine, cloud.salon.company_id)[0]
    body = meta_status(first.provider_message_id or "", "delivered", at=at(cloud, 2))
    assert cloud.meta(body).json()["applied"] == 1
    before = cloud.row(first.id)
    # When Meta posts the same status again (it retries what it thinks was not acknowledged)
    again = cloud.meta(body)
    # Then it is acknowledged and nothing moves
    assert again.status_code == 200 and again.json()["duplicate"] == 1
    after = cloud.row(first.id)
    assert (after.delivered_at, after.updated_at, after.status) == (before.delivered_at, before.updated_at, "sent")


def test_statuses_out_of_order_never_move_backwards(cloud: Receiver) -> None:
    first = rows(cloud.engine, cloud.salon.company_id)[0]
    message = first.provider_message_id or ""
    # Given Meta reports the read first (it skips "delivered" when the client reads at once)
    assert cloud.meta(meta_status(message, "read", at=at(cloud, 5))).json()["applied"] == 1
    # When the delivered and even a failed status arrive late
    late_delivered = cloud.meta(meta_status(message, "delivered", at=at(cloud, 4))).json()
    late_failed = cloud.meta(meta_status(message, "failed", at=at(cloud, 6), code=131026)).json()
    # Then the row keeps read, delivered when it was read, and stays sent
    row = cloud.row(first.id)
    assert (late_delivered["duplicate"], late_failed["duplicate"]) == (1, 1)
    assert (row.read_at, row.delivered_at) == (instant(cloud, 5), instant(cloud, 5))
    assert (row.status, row.failed_at, row.delivery_error_code) == ("sent", None, None)
    assert cloud.pending(row) is not None


# --- A failed delivery is not a contact -----------------------------------------------------------------------------


def test_a_marketing_limit_failure_reschedules_the_step_a_day_later_at_most_twice(
    cloud: Receiver, gateway: FakeGateway
) -> None:
    first = rows(cloud.engine, cloud.salon.company_id)[0]
    assert cloud.pending(first) is not None
    failed_at = instant(cloud, 3)
    # When Meta reports the per-user marketing limit
    answer = cloud.meta(meta_status(first.provider_message_id or "", "failed", at=at(cloud, 3), code=131049))
    assert answer.json()["applied"] == 1
    # Then the row is no longer a contact: it waits to send the same step again a day later, and the AI admin no
    # longer waits for a reply to it
    row = cloud.row(first.id)
    assert (row.status, row.delivery_error_code, row.failed_at) == ("generated", "131049", failed_at)
    assert (row.send_after, row.resend_count, row.step) == (failed_at + timedelta(hours=24), 1, first.step)
    assert row.context_saved_at is None
    assert cloud.pending(row) is None
    # And a day later the sweep sends it again, as a new message of its own, handed over anew
    resend_at = failed_at + timedelta(hours=24, minutes=1)
    company, history_id = cloud.salon.company_id, first.id
    with cloud.rt.session() as session:
        early = sweeps.sweep_company(session, company_id=company, now=resend_at - timedelta(hours=1))
        due = sweeps.sweep_company(session, company_id=company, now=resend_at)
    assert (company, history_id, ChainStep.SEND_MESSAGE) not in early.resume
    assert (company, history_id, ChainStep.SEND_MESSAGE) in due.resume
    outcomes = [
        step(cloud.rt, company_id=company, history_id=history_id, now=resend_at)
        for step in (pipeline.send_message, pipeline.persist_history, pipeline.save_handover)
    ]
    assert outcomes == [pipeline.Continue(), pipeline.Continue(), pipeline.Stop("done")]
    keys = [m["idempotency_key"] for m in gateway.messages() if m["phone"] == first.phone]
    assert keys == [f"reactivation:{company}:{history_id}", f"reactivation:{company}:{history_id}:r1"]
    resent = cloud.row(history_id)
    assert resent.status == "sent" and cloud.pending(resent) is not None
    # When it fails twice more, the second time it stays failed
    cloud.meta(meta_status(resent.provider_message_id or "", "failed", at=at(cloud, 24 * 60 + 5), code=131049))
    assert cloud.row(history_id).resend_count == 2
    with cloud.rt.session() as session:
        session.execute(
            ReactivationHistory.__table__.update()
            .where(ReactivationHistory.id == history_id)
            .values(status="sent", provider_message_id="wamid.THIRD", send_after=None, updated_at=resend_at)
        )
    cloud.meta(meta_status("wamid.THIRD", "failed", at=at(cloud, 48 * 60 + 5), code=131049))
    final = cloud.row(history_id)
    assert (final.status, final.resend_count, final.delivery_error_code) == ("failed", 2, "131049")


def test_a_number_not_on_whatsapp_is_suppressed_for_this_company_until_it_changes(cloud: Receiver) -> None:
    first, second = rows(cloud.engine, cloud.salon.company_id)[:2]
    # When Meta reports the first client's number undeliverable
    answer = cloud.meta(meta_status(first.provider_message_id or "", "failed", at=at(cloud, 2), code=131026))
    assert answer.json()["applied"] == 1
    # Then the row failed with the code, and the AI admin does not wait for a reply
    row = cloud.row(first.id)
    assert (row.status, row.delivery_error_code) == ("failed", "131026")
    assert cloud.pending(row) is None and cloud.pending(second) is not None
    # And the phone is skipped as not_on_whatsapp for this company, while another client is not
    later = instant(cloud, 60 * 24 * 40)
    with cloud.rt.session() as session:
        skip = recheck_client(
            session, company_id=row.company_id, client_id=row.client_id, lapse_date=row.last_visit_date, now=later
        )
        other = recheck_client(
            session, company_id=row.company_id, client_id=second.client_id, lapse_date=second.last_visit_date, now=later
        )
    assert (skip, other) == (SkipReason.NOT_ON_WHATSAPP, None)
    # until the client's number changes
    with Session(cloud.engine) as session:
        session.get(Client, row.client_id).phone = "+79990001122"  # type: ignore[union-attr]
        session.commit()
    with cloud.rt.session() as session:
        assert (
            recheck_client(
                session, company_id=row.company_id, client_id=row.client_id, lapse_date=row.last_visit_date, now=later
            )
            is None
        )


def test_a_report_about_a_message_whose_answer_was_lost_recovers_it(cloud: Receiver, gateway: FakeGateway) -> None:
    # Given two rows whose Cloud API answer never came back (a timeout after Meta took them): one still `sending`,
    # one already given up as `unknown`
    lost, given_up = rows(cloud.engine, cloud.salon.company_id)[:2]
    with cloud.rt.session() as session:
        for row, status in ((lost, "sending"), (given_up, "unknown")):
            session.execute(
                ReactivationHistory.__table__.update()
                .where(ReactivationHistory.id == row.id)
                .values(status=status, provider_message_id=None, context_saved_at=None, updated_at=cloud.salon.now)
            )
    company = cloud.salon.company_id
    # When Meta reports them, naming each by its callback data (the idempotency key)
    for row, message in ((lost, "wamid.LOST"), (given_up, "wamid.GIVENUP")):
        body = meta_status(message, "delivered", at=at(cloud, 1), callback=f"reactivation:{company}:{row.id}")
        assert cloud.meta(body).json()["applied"] == 1
    # Then both are recorded as sent with Meta's ids, and handed over to the AI admin
    for row, message in ((lost, "wamid.LOST"), (given_up, "wamid.GIVENUP")):
        recovered = cloud.row(row.id)
        assert (recovered.status, recovered.provider_message_id) == ("sent", message)
        assert recovered.delivered_at == instant(cloud, 1) and cloud.pending(recovered) is not None
    # And a callback naming another round, or a failure, recovers nothing
    third = rows(cloud.engine, company)[2]
    other_round = meta_status("wamid.X", "read", at=at(cloud, 2), callback=f"reactivation:{company}:{third.id}:r1")
    assert cloud.meta(other_round).json()["unknown_message"] == 1


# --- The gateway's reports --------------------------------------------------------------------------------------------


def test_the_gateway_posts_with_its_bearer_token(via_gateway: Receiver) -> None:
    first, second = rows(via_gateway.engine, via_gateway.salon.company_id)
    url = f"{via_gateway.url}/webhooks/gateway"
    delivered = {"id": first.provider_message_id, "status": "delivered"}
    assert via_gateway.http.post(url, json=delivered).status_code == 401
    assert via_gateway.http.post(url, json=delivered, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert via_gateway.row(first.id).delivered_at is None
    auth = {"Authorization": f"Bearer {GATEWAY_HOOK}"}
    assert via_gateway.http.post(url, json={"status": "delivered"}, headers=auth).status_code == 400
    assert via_gateway.http.post(url, json=delivered, headers=auth).json()["applied"] == 1
    # the gateway gives no time: the receiver's clock stands in
    assert via_gateway.row(first.id).delivered_at == instant(via_gateway, 60)
    failed = {"id": second.provider_message_id, "status": "failed", "error": "131026 not on WhatsApp"}
    assert via_gateway.http.post(url, json=failed, headers=auth).json()["applied"] == 1
    row = via_gateway.row(second.id)
    assert (row.status, row.delivery_error_code) == ("failed", "131026")
    assert via_gateway.pending(row) is None


@pytest.mark.subprocess
def test_the_command_serves_the_receiver(committed_settings: Settings, tmp_path: Path) -> None:
    # Given `reactivation webhook serve` started as an operator starts it
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WHATSAPP_", "REDIS_", "CELERY_", "GEMINI_"))}
    env.update(
        DATABASE_URL=committed_settings.database_url,
        REDIS_URL=committed_settings.redis_url or "",
        REDIS_KEY_PREFIX=committed_settings.redis_key_prefix,
        WHATSAPP_WEBHOOK_VERIFY_TOKEN=VERIFY,
        WHATSAPP_APP_SECRET=SECRET,
    )
    command = [sys.executable, "-m", "reactivation.tools.cli", "webhook", "serve", "--port", str(port)]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        answer = wait_for(url + "/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=42")
        # Then it answers Meta's handshake and refuses an unsigned post
        assert (answer.status_code, answer.text) == (200, "42")
        assert httpx.post(url + "/webhooks/whatsapp", json={"entry": []}, trust_env=False).status_code == 401
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=20)
    assert process.returncode in (0, -15), output.decode(errors="replace")[-2000:]


def wait_for(url: str, timeout: float = 30.0) -> httpx.Response:
    """GET `url` until the server answers (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url, timeout=2, trust_env=False)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def free_port() -> int:
    """A port of 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
