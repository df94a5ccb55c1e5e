"""The Redis hand-over to the AI admin, on the real Redis (and on fakeredis, which the embedded default uses)."""

from __future__ import annotations

import json
import logging
import select
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis

from reactivation.core.vocabulary import Step
from reactivation.handover.admin_handover import (
    CORRUPT_TTL_SECONDS,
    ContextConflict,
    ContextError,
    HandoverContext,
    SaveCall,
    SaveReply,
    StoredValue,
    clear_pending_action,
    read_pending_action,
    save_context,
    withdraw_handover,
)
from reactivation.handover.keys import DialogKeys, handover_marker_key
from reactivation.handover.scripts import SAVE_SCRIPT
from tests.conftest import REDIS_URL

PHONE = "+79001234567"
COMPANY = 962302
TTL = 7 * 24 * 3600
SENT = datetime(2025, 4, 15, 7, 0, 12, 345000, tzinfo=UTC)
# What the AI admin may keep in a dialog; Redis's cjson would turn [] into {} and mangle the big integer.
ADMIN_FIELDS: dict[str, Any] = {
    "state": "active",
    "clientName": "Мария",
    "selectedServices": [],
    "telegramId": 12345678901234567890,
    "price": 0.1,
    "nested": {"slots": [], "note": None, "path": "a/b"},
    "emoji": "💅",
}


def context(history_id: int = 1, *, phone: str = PHONE, step: Step = Step.GENTLE, **overrides: Any) -> HandoverContext:
    values: dict[str, Any] = {
        "company_id": COMPANY,
        "phone": phone,
        "history_id": history_id,
        "step": step,
        "message": f"Мария, добрый день! Сообщение {history_id}",
        "sent_at": SENT,
        "days_inactive": 41,
        "last_visit_date": date(2025, 3, 5),
        "interval_days": 35,
        "interval_source": "salon_median",
        "confidence": Decimal("0.85"),
        "suggested_service_id": 1001,
        "suggested_service_name": "Маникюр с покрытием гель-лак",
    }
    values.update(overrides)
    return HandoverContext(**values)


def save(client: redis.Redis, prefix: str, ctx: HandoverContext, **kwargs: Any) -> Any:
    return save_context(client, ctx, prefix=prefix, ttl_seconds=kwargs.pop("ttl_seconds", TTL), **kwargs)


@pytest.fixture
def keys(redis_prefix: str) -> DialogKeys:
    return DialogKeys.build(redis_prefix, COMPANY, PHONE)


# --- the payload ---------------------------------------------------------------------------------------------------


def test_the_pending_action_has_the_admins_field_names() -> None:
    assert context(4567, step=Step.OFFER).pending_action() == {
        "type": "reactivation_response",
        "campaign": "dormant_60",
        "step": 2,
        "messageType": "offer",
        "daysInactive": 41,
        "lastVisitDate": "2025-03-05",
        "suggestedService": {"id": 1001, "name": "Маникюр с покрытием гель-лак"},
        "intervalDays": 35,
        "intervalSource": "salon_median",
        "confidence": 0.85,
        "messageSent": "Мария, добрый день! Сообщение 4567",
        "messageSentAt": "2025-04-15T07:00:12.345Z",
        "reactivationHistoryId": 4567,
    }
    bare = context(1, suggested_service_id=None, suggested_service_name=None, confidence=None).pending_action()
    assert (bare["suggestedService"], bare["confidence"]) == (None, None)


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"phone": "89001234567"}, "E.164"),
        ({"sent_at": datetime(2025, 4, 15, 7, 0)}, "timezone-aware"),
        ({"message": " "}, "empty message"),
        ({"step": 9}, "9"),
    ],
)
def test_a_context_with_unusable_data_is_refused(overrides: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        context(1, **overrides)


# --- the dialog ----------------------------------------------------------------------------------------------------


def test_a_new_dialog_gets_the_pending_action_and_the_ttl(
    redis_client: redis.Redis, redis_prefix: str, keys: DialogKeys
) -> None:
    result = save(redis_client, redis_prefix, context(1))
    assert not result.already_saved
    assert json.loads(redis_client.get(keys.dialog)) == {"pendingAction": context(1).pending_action()}  # type: ignore[arg-type]
    assert TTL - 60 < redis_client.ttl(keys.dialog) <= TTL  # type: ignore[operator]
    assert keys.dialog == f"{redis_prefix}dialog:962302:79001234567"


def test_the_admins_fields_are_kept_exactly(redis_client: redis.Redis, redis_prefix: str, keys: DialogKeys) -> None:
    # given a dialog the admin wrote, with an older pendingAction of its own
    redis_client.set(keys.dialog, json.dumps({**ADMIN_FIELDS, "pendingAction": {"type": "booking_confirmation"}}))
    # when the hand-over is saved
    save(redis_client, redis_prefix, context(1))
    # then every other field is unchanged, byte for byte (empty arrays stay arrays, the big integer keeps its digits)
    raw: str = redis_client.get(keys.dialog)  # type: ignore[assignment]
    dialog = json.loads(raw)
    assert {k: v for k, v in dialog.items() if k != "pendingAction"} == ADMIN_FIELDS
    assert dialog["pendingAction"] == context(1).pending_action()
    assert raw.startswith(json.dumps(ADMIN_FIELDS)[:-1] + ",") and "12345678901234567890" in raw


@pytest.mark.parametrize(
    ("existing_ttl", "expected"),
    [
        (30 * 24 * 3600, (30 * 24 * 3600 - 60, 30 * 24 * 3600)),  # longer: kept
        (3600, (TTL - 60, TTL)),  # shorter: lengthened
        (None, (-1, -1)),  # no expiry: the admin's choice is kept
    ],
)
def test_an_existing_longer_ttl_is_kept(
    redis_client: redis.Redis,
    redis_prefix: str,
    keys: DialogKeys,
    existing_ttl: int | None,
    expected: tuple[int, int],
) -> None:
    redis_client.set(keys.dialog, json.dumps(ADMIN_FIELDS), ex=existing_ttl)
    save(redis_client, redis_prefix, context(1))
    low, high = expected
    assert low <= redis_client.ttl(keys.dialog) <= high  # type: ignore[operator]


@pytest.mark.parametrize("broken", ["{not json", "[1, 2, 3]", '"just a string"', "null", '{"a": NaN}'])
def test_a_dialog_that_is_not_a_json_object_is_moved_aside_not_lost(
    redis_client: redis.Redis,
    redis_prefix: str,
    keys: DialogKeys,
    broken: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    redis_client.set(keys.dialog, broken, ex=3600)
    caplog.set_level(logging.WARNING, logger="reactivation.handover.admin_handover")
    result = save(redis_client, redis_prefix, context(1))
    # the broken value is kept aside, byte for byte, for a month
    assert result.moved_aside_to == keys.corrupt
    assert redis_client.get(keys.corrupt) == broken
    assert CORRUPT_TTL_SECONDS - 60 < redis_client.ttl(keys.corrupt) <= CORRUPT_TTL_SECONDS  # type: ignore[operator]
    # and the dialog starts afresh with the pending action
    assert json.loads(redis_client.get(keys.dialog)) == {"pendingAction": context(1).pending_action()}  # type: ignore[arg-type]
    # the operator hears about it, without the phone number
    assert "moved aside" in caplog.text
    assert "9001234567" not in caplog.text + " ".join(str(r.__dict__) for r in caplog.records)


@pytest.mark.parametrize(
    "broken", [b'{"note": "\xff\xfe not UTF-8"}', b'{"a": ' * 5000 + b"1" + b"}" * 5000], ids=["bytes", "deep"]
)
def test_a_dialog_python_cannot_read_is_moved_aside_byte_for_byte(
    redis_client: redis.Redis, redis_prefix: str, keys: DialogKeys, broken: bytes
) -> None:
    # given a dialog that is not UTF-8, or nested deeper than a JSON parser goes
    raw = redis.Redis.from_url(REDIS_URL)
    try:
        raw.set(keys.dialog, broken, ex=3600)
        # when the hand-over is saved (by a client that decodes replies, as the product's does)
        result = save(redis_client, redis_prefix, context(1))
        # then the value is kept aside exactly and the dialog starts afresh
        assert result.moved_aside_to == keys.corrupt
        assert raw.get(keys.corrupt) == broken
        assert read_pending_action(redis_client, prefix=redis_prefix, company_id=COMPANY, phone=PHONE) is not None
    finally:
        raw.close()


def test_a_dialog_of_another_redis_type_is_moved_aside(
    redis_client: redis.Redis, redis_prefix: str, keys: DialogKeys
) -> None:
    redis_client.hset(keys.dialog, mapping={"state": "active"})
    result = save(redis_client, redis_prefix, context(1))
    assert result.moved_aside_to == keys.corrupt
    assert redis_client.hgetall(keys.corrupt) == {"state": "active"}
    assert read_pending_action(redis_client, prefix=redis_prefix, company_id=COMPANY, phone=PHONE) is not None


# --- messages ------------------------------------------------------------------------------------------------------


def test_the_message_is_appended_and_only_the_last_fifty_kept(
    redis_client: redis.Redis, redis_prefix: str, keys: DialogKeys
) -> None:
    # given an admin history of 55 messages that never expires
    redis_client.rpush(keys.messages, *(json.dumps({"sender": "client", "text": f"m{n}"}) for n in range(55)))
    # when the hand-over is saved
    save(redis_client, redis_prefix, context(1))
    # then ours is the newest, the oldest six are gone, and the admin's "no expiry" is kept
    items = [json.loads(x) for x in redis_client.lrange(keys.messages, 0, -1)]  # type: ignore[union-attr]
    assert len(items) == 50
    assert items[0]["text"] == "m6"
    assert items[-1] == {
        "sender": "bot",
        "text": "Мария, добрый день! Сообщение 1",
        "timestamp": "2025-04-15T07:00:12.345Z",
        "type": "reactivation",
    }
    assert redis_client.ttl(keys.messages) == -1


def test_a_new_message_list_gets_the_ttl(redis_client: redis.Redis, redis_prefix: str, keys: DialogKeys) -> None:
    save(redis_client, redis_prefix, context(1))
    assert redis_client.llen(keys.messages) == 1
    assert TTL - 60 < redis_client.ttl(keys.messages) <= TTL  # type: ignore[operator]


def test_a_messages_key_of_another_type_is_left_alone(
    redis_client: redis.Redis, redis_prefix: str, keys: DialogKeys
) -> None:
    redis_client.set(keys.messages, "the admin's own format")
    result = save(redis_client, redis_prefix, context(1))
    assert result.messages == "wrongtype"
    assert redis_client.get(keys.messages) == "the admin's own format"
    assert read_pending_action(redis_client, prefix=redis_prefix, company_id=COMPANY, phone=PHONE) is not None


# --- the client card -----------------------------------------------------------------------------------------------


def test_a_missing_client_card_is_not_created(redis_client: redis.Redis, redis_prefix: str, keys: DialogKeys) -> None:
    assert save(redis_client, redis_prefix, context(1)).client == "absent"
    assert not redis_client.exists(keys.client)


def test_a_json_client_card_is_merged_keeping_its_fields_and_ttl(
    redis_client: redis.Redis, redis_prefix: str, keys: DialogKeys
) -> None:
    redis_client.set(keys.client, json.dumps({"name": "Мария", "visits": [], "id": 12345678901234567890}), ex=5000)
    assert save(redis_client, redis_prefix, context(1, step=Step.WIN_BACK)).client == "json"
    assert json.loads(redis_client.get(keys.client)) == {  # type: ignore[arg-type]
        "name": "Мария",
        "visits": [],
        "id": 12345678901234567890,
        "lastReactivationAt": "2025-04-15T07:00:12.345Z",
        "reactivationCampaign": "dormant_90",
    }
    assert 4900 < redis_client.ttl(keys.client) <= 5000  # type: ignore[operator]


def test_a_hash_client_card_gets_the_two_fields(redis_client: redis.Redis, redis_prefix: str, keys: DialogKeys) -> None:
    redis_client.hset(keys.client, mapping={"name": "Мария", "phone": "79001234567"})
    assert save(redis_client, redis_prefix, context(1)).client == "hash"
    assert redis_client.hgetall(keys.client) == {
        "name": "Мария",
        "phone": "79001234567",
        "lastReactivationAt": "2025-04-15T07:00:12.345Z",
        "reactivationCampaign": "dormant_30",
    }


def test_a_client_card_that_is_not_json_is_left_alone(
    redis_client: redis.Redis, redis_prefix: str, keys: DialogKeys
) -> None:
    redis_client.set(keys.client, "<xml/>")
    assert save(redis_client, redis_prefix, context(1)).client == "invalid"
    assert redis_client.get(keys.client) == "<xml/>"


# --- idempotency ---------------------------------------------------------------------------------------------------


def test_saving_the_same_history_row_twice_changes_nothing(
    redis_client: redis.Redis, redis_prefix: str, keys: DialogKeys
) -> None:
    save(redis_client, redis_prefix, context(1))
    # the admin clears the action when the client replies
    assert clear_pending_action(redis_client, prefix=redis_prefix, company_id=COMPANY, phone=PHONE)
    # a retried task saves again: no second message, and the cleared action is not revived
    again = save(redis_client, redis_prefix, context(1))
    assert again.already_saved
    assert redis_client.llen(keys.messages) == 1
    assert read_pending_action(redis_client, prefix=redis_prefix, company_id=COMPANY, phone=PHONE) is None
    assert redis_client.exists(handover_marker_key(redis_prefix, COMPANY, 1))


def test_the_next_step_replaces_the_action_and_adds_a_message(
    redis_client: redis.Redis, redis_prefix: str, keys: DialogKeys
) -> None:
    save(redis_client, redis_prefix, context(1))
    save(redis_client, redis_prefix, context(2, step=Step.OFFER))
    action = read_pending_action(redis_client, prefix=redis_prefix, company_id=COMPANY, phone=PHONE)
    assert action is not None and (action["reactivationHistoryId"], action["campaign"]) == (2, "dormant_60")
    assert redis_client.llen(keys.messages) == 2


def test_parallel_saves_of_one_row_append_one_message(
    redis_client: redis.Redis, redis_prefix: str, keys: DialogKeys
) -> None:
    results: list[Any] = []

    def run() -> None:
        client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
        results.append(save(client, redis_prefix, context(1)))
        client.close()

    threads = [threading.Thread(target=run) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(r.already_saved for r in results) == [False] + [True] * 5
    assert redis_client.llen(keys.messages) == 1


# --- reading and clearing ------------------------------------------------------------------------------------------


def test_read_pending_action_only_returns_ours(redis_client: redis.Redis, redis_prefix: str, keys: DialogKeys) -> None:
    read = lambda: read_pending_action(redis_client, prefix=redis_prefix, company_id=COMPANY, phone=PHONE)  # noqa: E731
    assert read() is None
    redis_client.set(keys.dialog, json.dumps({"pendingAction": {"type": "booking_confirmation"}}))
    assert read() is None
    redis_client.set(keys.dialog, "{broken")
    assert read() is None
    redis_client.delete(keys.dialog)
    redis_client.hset(keys.dialog, "pendingAction", "x")
    assert read() is None
    redis_client.delete(keys.dialog)
    save(redis_client, redis_prefix, context(3))
    assert read() == context(3).pending_action()
    # the same client of another company sees nothing
    assert read_pending_action(redis_client, prefix=redis_prefix, company_id=1, phone=PHONE) is None
    # the phone may be given with or without its '+'
    assert read_pending_action(redis_client, prefix=redis_prefix, company_id=COMPANY, phone="79001234567") is not None


def test_clearing_keeps_every_other_field_and_the_ttl(
    redis_client: redis.Redis, redis_prefix: str, keys: DialogKeys
) -> None:
    redis_client.set(keys.dialog, json.dumps(ADMIN_FIELDS), ex=30 * 24 * 3600)
    save(redis_client, redis_prefix, context(5))
    # not ours to clear: another history row
    assert not clear_pending_action(redis_client, prefix=redis_prefix, company_id=COMPANY, phone=PHONE, history_id=4)
    assert read_pending_action(redis_client, prefix=redis_prefix, company_id=COMPANY, phone=PHONE) is not None
    # ours
    assert clear_pending_action(redis_client, prefix=redis_prefix, company_id=COMPANY, phone=PHONE, history_id=5)
    assert json.loads(redis_client.get(keys.dialog)) == ADMIN_FIELDS  # type: ignore[arg-type]
    assert redis_client.ttl(keys.dialog) > TTL  # type: ignore[operator]
    # nothing left to clear
    assert not clear_pending_action(redis_client, prefix=redis_prefix, company_id=COMPANY, phone=PHONE)


def test_clearing_leaves_the_admins_own_action_alone(
    redis_client: redis.Redis, redis_prefix: str, keys: DialogKeys
) -> None:
    admin_action = {**ADMIN_FIELDS, "pendingAction": {"type": "booking_confirmation"}}
    redis_client.set(keys.dialog, json.dumps(admin_action))
    assert not clear_pending_action(redis_client, prefix=redis_prefix, company_id=COMPANY, phone=PHONE)
    assert json.loads(redis_client.get(keys.dialog)) == admin_action  # type: ignore[arg-type]
    redis_client.delete(keys.dialog)
    assert not clear_pending_action(redis_client, prefix=redis_prefix, company_id=COMPANY, phone=PHONE)


def test_everything_written_is_under_the_prefix(redis_client: redis.Redis, redis_prefix: str) -> None:
    save(redis_client, redis_prefix, context(1))
    written = set(redis_client.scan_iter(match=f"*{COMPANY}*79001234567*"))
    assert written and all(key.startswith(redis_prefix) for key in written)


# redis_client's teardown removes the hand-over marker this test leaves, which would make a later save a no-op.
@pytest.mark.usefixtures("redis_client")
def test_a_client_without_decoded_responses_works_too(redis_prefix: str, keys: DialogKeys) -> None:
    raw = redis.Redis.from_url(REDIS_URL)
    try:
        raw.set(keys.dialog, json.dumps(ADMIN_FIELDS, ensure_ascii=False).encode("utf-8"))
        save(raw, redis_prefix, context(1))
        action = read_pending_action(raw, prefix=redis_prefix, company_id=COMPANY, phone=PHONE)
        assert action is not None and action["reactivationHistoryId"] == 1
        assert clear_pending_action(raw, prefix=redis_prefix, company_id=COMPANY, phone=PHONE, history_id=1)
        assert json.loads(raw.get(keys.dialog)) == ADMIN_FIELDS  # type: ignore[arg-type]
    finally:
        raw.close()


# --- concurrency with the AI admin ---------------------------------------------------------------------------------


def admin_write(client: redis.Redis, key: str, field: str, value: Any, *, tries: int = 10_000) -> None:
    """What the AI admin does: an optimistic read-modify-write of its own field (WATCH/MULTI)."""
    for _ in range(tries):
        with client.pipeline() as pipe:
            try:
                pipe.watch(key)
                raw: Any = pipe.get(key)
                dialog = json.loads(raw) if raw else {}
                dialog[field] = value
                pipe.multi()
                pipe.set(key, json.dumps(dialog, ensure_ascii=False), keepttl=True)
                pipe.execute()
                return
            except redis.WatchError:
                continue
    raise AssertionError(f"admin could not write {field}")


def admin_loop(url: str, key: str, stop_key: str, name: str, *, limit: int = 20_000, seconds: float = 60.0) -> int:
    """Writes fields `{name}_{i}` until `stop_key` appears (bounded in count and time); returns how many."""
    client = redis.Redis.from_url(url, decode_responses=True)
    deadline = time.monotonic() + seconds
    written = 0
    try:
        while written < limit and time.monotonic() < deadline:
            admin_write(client, key, f"{name}_{written}", written)
            written += 1
            if written % 10 == 0 and client.exists(stop_key):
                break
    finally:
        client.close()
    return written


@pytest.mark.subprocess
def test_the_admin_writing_in_a_tight_loop_loses_nothing(
    redis_client: redis.Redis, redis_prefix: str, keys: DialogKeys
) -> None:
    # given the admin's dialog, and the admin writing its own fields from two threads and another process
    redis_client.set(keys.dialog, json.dumps(ADMIN_FIELDS), ex=3600)
    stop_key = f"{redis_prefix}stop-admin"
    counts: dict[str, int] = {}

    def thread_admin(name: str) -> None:
        counts[name] = admin_loop(REDIS_URL, keys.dialog, stop_key, name)

    threads = [threading.Thread(target=thread_admin, args=(f"thread{n}",)) for n in (1, 2)]
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from tests.handover.test_admin_handover import admin_loop; print('ready', flush=True); "
            "print(admin_loop(sys.argv[1], sys.argv[2], sys.argv[3], 'process'))",
            REDIS_URL,
            keys.dialog,
            stop_key,
        ],
        cwd=Path(__file__).parents[2],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 30)
    assert ready and process.stdout.readline().strip() == "ready"
    for thread in threads:
        thread.start()
    # when the hand-over is saved 150 times meanwhile (a new history row each time)
    conflicts = 0
    try:
        for history_id in range(1, 151):
            result = save(redis_client, redis_prefix, context(history_id))
            conflicts += result.attempts - 1
    finally:
        redis_client.set(stop_key, "1")
        for thread in threads:
            thread.join(timeout=60)
        out, _ = process.communicate(timeout=60)
    counts["process"] = int(out.strip())
    # then every field the admin wrote is there, with the admin's original fields, and the last pendingAction
    dialog = json.loads(redis_client.get(keys.dialog))  # type: ignore[arg-type]
    for name, count in counts.items():
        assert count > 0
        missing = [i for i in range(count) if dialog.get(f"{name}_{i}") != i]
        assert missing == [], f"{name} lost {len(missing)} of {count} fields"
    assert {k: dialog[k] for k in ADMIN_FIELDS} == ADMIN_FIELDS
    assert dialog["pendingAction"] == context(150).pending_action()
    # and the message history holds the last 50 messages in order
    texts = [json.loads(x)["text"] for x in redis_client.lrange(keys.messages, 0, -1)]  # type: ignore[union-attr]
    assert texts == [f"Мария, добрый день! Сообщение {n}" for n in range(101, 151)]
    print(f"admin writes: {counts}, save conflicts retried: {conflicts}")


def meddling(monkeypatch: pytest.MonkeyPatch, write: Any) -> dict[str, int]:
    """Makes `write(client, dialog_key, n)` run just before the n-th save script, as another writer would."""
    original = SAVE_SCRIPT.__class__.__call__
    calls = {"n": 0}

    def meddle(self: Any, redis_client: redis.Redis, keys_: list[str], args: list[Any]) -> Any:
        if self is SAVE_SCRIPT:
            calls["n"] += 1
            write(redis_client, keys_[0], calls["n"])
        return original(self, redis_client, keys_, args)

    monkeypatch.setattr(SAVE_SCRIPT.__class__, "__call__", meddle)
    return calls


def test_an_admin_write_between_the_read_and_the_save_is_kept_without_a_retry(
    redis_prefix: str, keys: DialogKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a dialog the admin rewrites just before the save script runs
    client = fakeredis.FakeRedis(decode_responses=True)
    client.set(keys.dialog, json.dumps(ADMIN_FIELDS))
    calls = meddling(monkeypatch, lambda c, key, n: c.set(key, json.dumps({**ADMIN_FIELDS, "admin": n})))
    # then the save splices into what is there now, at the first attempt
    result = save_context(client, context(1), prefix=redis_prefix, ttl_seconds=TTL)
    assert (result.attempts, calls["n"]) == (1, 1)
    assert json.loads(client.get(keys.dialog)) == {  # type: ignore[arg-type]
        **ADMIN_FIELDS,
        "admin": 1,
        "pendingAction": context(1).pending_action(),
    }


def test_a_broken_dialog_that_keeps_changing_ends_in_a_conflict_error(
    redis_prefix: str, keys: DialogKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a dialog that is not JSON, and is rewritten (still broken) between every read and write
    client = fakeredis.FakeRedis(decode_responses=True)
    client.set(keys.dialog, "{broken 0")
    calls = meddling(monkeypatch, lambda c, key, n: c.set(key, f"{{broken {n}"))
    # then the save gives up after its bounded attempts, having moved and written nothing
    with pytest.raises(ContextConflict, match="5 attempts"):
        save_context(client, context(1), prefix=redis_prefix, ttl_seconds=TTL, max_attempts=5)
    assert calls["n"] == 5
    assert client.get(keys.dialog) == "{broken 5"
    assert not client.exists(keys.messages) and not client.exists(keys.corrupt)


@pytest.mark.parametrize(
    "dialog",
    [
        '{"note": "a \\"quoted\\" {brace} [bracket], comma", "pendingAction": {"type": "reactivation_response"}}',
        '  {\n  "pendingAction" : 1 ,\n  "list": [{"pendingAction": 2}], "s": "pendingAction"\n}  ',
        "{}",
        "{ }",
    ],
)
def test_the_splice_reads_strings_nesting_and_whitespace(
    redis_client: redis.Redis, redis_prefix: str, keys: DialogKeys, dialog: str
) -> None:
    # given an admin dialog whose text is awkward to walk, with or without a top-level pendingAction
    redis_client.set(keys.dialog, dialog)
    save(redis_client, redis_prefix, context(1))
    # then only the top-level pendingAction is ours now, and every other member is as it was
    expected = {k: v for k, v in json.loads(dialog).items() if k != "pendingAction"}
    stored = json.loads(redis_client.get(keys.dialog))  # type: ignore[arg-type]
    assert stored == {**expected, "pendingAction": context(1).pending_action()}
    # and clearing gives back exactly the admin's members
    assert clear_pending_action(redis_client, prefix=redis_prefix, company_id=COMPANY, phone=PHONE, history_id=1)
    assert json.loads(redis_client.get(keys.dialog)) == expected  # type: ignore[arg-type]


# --- fakeredis (the embedded default) ------------------------------------------------------------------------------


def test_the_scripts_run_on_fakeredis() -> None:
    # given the in-process Redis stand-in the embedded default uses, holding an admin dialog and a hash card
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    keys = DialogKeys.build("", COMPANY, PHONE)
    client.set(keys.dialog, json.dumps(ADMIN_FIELDS), ex=60)
    client.hset(keys.client, mapping={"name": "Мария"})
    # when saved (the first EVALSHA finds no script and loads it), read and cleared
    result = save_context(client, context(1), prefix="", ttl_seconds=TTL)
    assert client.script_exists(SAVE_SCRIPT.sha) == [True]
    assert (result.client, result.messages, result.moved_aside_to) == ("hash", "appended", None)
    assert read_pending_action(client, prefix="", company_id=COMPANY, phone=PHONE) == context(1).pending_action()
    assert TTL - 60 < client.ttl(keys.dialog) <= TTL  # type: ignore[operator]
    assert clear_pending_action(client, prefix="", company_id=COMPANY, phone=PHONE, history_id=1)
    assert json.loads(client.get(keys.dialog)) == ADMIN_FIELDS  # type: ignore[arg-type]
    assert client.hget(keys.client, "reactivationCampaign") == "dormant_30"
    # and a broken dialog is moved aside there too
    client.set(keys.dialog, "{oops")
    assert save_context(client, context(2), prefix="", ttl_seconds=TTL).moved_aside_to == keys.corrupt
    assert client.get(keys.corrupt) == "{oops"
    assert client.llen(keys.messages) == 2


def test_the_sent_time_is_written_as_javascript_does() -> None:
    moscow = context(1, sent_at=datetime(2025, 4, 15, 10, 0, tzinfo=UTC) + timedelta(microseconds=999))
    assert moscow.pending_action()["messageSentAt"] == "2025-04-15T10:00:00.000Z"


# --- the script's call, typed --------------------------------------------------------------------------------------


def test_the_save_call_passes_the_scripts_keys_and_arguments_in_order() -> None:
    # given the hand-over of an offer, under a prefix
    call = SaveCall.build(context(4567, step=Step.OFFER), prefix="p:", ttl_seconds=TTL, max_messages=50)
    # then KEYS: dialog, messages, client card, where a broken dialog goes, the row's marker
    assert call.key_names() == [
        "p:dialog:962302:79001234567",
        "p:messages:962302:79001234567",
        "p:client:962302:79001234567",
        "p:dialog:962302:79001234567:corrupt",
        "p:reactivation:handover:962302:4567",
    ]
    # and ARGV: the members and values written as the admin writes JSON (compact, UTF-8), the TTLs in milliseconds
    action = (
        '"pendingAction":{"type":"reactivation_response","campaign":"dormant_60","step":2,"messageType":"offer",'
        '"daysInactive":41,"lastVisitDate":"2025-03-05","suggestedService":{"id":1001,'
        '"name":"Маникюр с покрытием гель-лак"},"intervalDays":35,"intervalSource":"salon_median","confidence":0.85,'
        '"messageSent":"Мария, добрый день! Сообщение 4567","messageSentAt":"2025-04-15T07:00:12.345Z",'
        '"reactivationHistoryId":4567}'
    )
    item = (
        '{"sender":"bot","text":"Мария, добрый день! Сообщение 4567","timestamp":"2025-04-15T07:00:12.345Z",'
        '"type":"reactivation"}'
    )
    common = [
        action,
        604_800_000,
        item,
        50,
        '"lastReactivationAt":"2025-04-15T07:00:12.345Z"',
        '"reactivationCampaign":"dormant_60"',
        "2025-04-15T07:00:12.345Z",
        "dormant_60",
        2_592_000_000,
    ]
    # a dialog to splice into goes without its value; one to replace goes with it, for the script to compare
    assert call.arguments(StoredValue("none", b"")) == [*common, "0", "none", ""]
    assert call.arguments(StoredValue("string", b'{"a": 1}')) == [*common, "0", "string", ""]
    assert call.arguments(StoredValue("string", b"[1]")) == [*common, "1", "string", b"[1]"]
    assert call.arguments(StoredValue("hash", b"")) == [*common, "1", "hash", b""]


@pytest.mark.parametrize(("ttl_seconds", "max_messages", "problem"), [(0, 50, "ttl_seconds"), (TTL, 0, "max_messages")])
def test_a_save_call_needs_a_ttl_and_a_message_limit(ttl_seconds: int, max_messages: int, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        SaveCall.build(context(1), prefix="", ttl_seconds=ttl_seconds, max_messages=max_messages)


@pytest.mark.parametrize(
    ("reply", "parsed"),
    [
        (["done"], SaveReply("done")),
        ([b"conflict"], SaveReply("conflict")),
        (["ok", 0, "appended", "absent"], SaveReply("ok", False, "appended", "absent")),
        ([b"ok", 1, b"wrongtype", b"invalid"], SaveReply("ok", True, "wrongtype", "invalid")),
    ],
)
def test_the_scripts_reply_is_read_as_strings_or_bytes(reply: list[Any], parsed: SaveReply) -> None:
    assert SaveReply.parse(reply) == parsed


@pytest.mark.parametrize(
    "reply",
    [[], ["ok"], ["ok", 2, "appended", "absent"], ["ok", 0, "prepended", "absent"], ["ok", 0, "appended", "xml"]],
)
def test_a_reply_the_script_never_gives_is_a_context_error(reply: list[Any]) -> None:
    with pytest.raises(ContextError, match=r"unexpected answer from save\.lua"):
        SaveReply.parse(reply)


def test_a_withdrawn_hand_over_leaves_the_admin_nothing_of_that_message(
    redis_client: redis.Redis, redis_prefix: str, keys: DialogKeys
) -> None:
    # given the admin's dialog with our pendingAction, and the message in its history
    redis_client.set(keys.dialog, json.dumps(ADMIN_FIELDS))
    failed = context(31)
    save(redis_client, redis_prefix, failed)
    # when the provider reports the message failed and the hand-over is withdrawn (twice: a replay)
    assert withdraw_handover(redis_client, failed, prefix=redis_prefix, ttl_seconds=TTL)
    assert not withdraw_handover(redis_client, failed, prefix=redis_prefix, ttl_seconds=TTL)
    # then the pendingAction and the message item are gone, the admin's fields kept
    dialog = json.loads(redis_client.get(keys.dialog) or "{}")
    assert "pendingAction" not in dialog and {k: dialog[k] for k in ADMIN_FIELDS} == ADMIN_FIELDS
    assert redis_client.lrange(keys.messages, 0, -1) == []
    # and a hand-over of that message still on its way writes nothing
    assert save(redis_client, redis_prefix, failed).already_saved
    # while the same row's message sent again after the failure is handed over anew
    resent = context(31, resend=1, message="Мария, добрый день! Сообщение ещё раз")
    assert not save(redis_client, redis_prefix, resent).already_saved
    action = json.loads(redis_client.get(keys.dialog) or "{}")["pendingAction"]
    assert action["messageSent"] == "Мария, добрый день! Сообщение ещё раз"
    assert redis_client.exists(handover_marker_key(redis_prefix, COMPANY, 31, 1))


def test_withdrawing_keeps_a_newer_messages_pending_action(
    redis_client: redis.Redis, redis_prefix: str, keys: DialogKeys
) -> None:
    save(redis_client, redis_prefix, context(40))
    save(redis_client, redis_prefix, context(41))
    assert not withdraw_handover(redis_client, context(40), prefix=redis_prefix, ttl_seconds=TTL)
    assert json.loads(redis_client.get(keys.dialog) or "{}")["pendingAction"]["reactivationHistoryId"] == 41
    assert len(redis_client.lrange(keys.messages, 0, -1)) == 1
