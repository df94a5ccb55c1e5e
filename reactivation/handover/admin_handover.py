"""The hand-over to the salon's AI admin through Redis, after a message is sent.

Three keys per client (see `reactivation.handover.keys`), owned by the admin; this product adds to them and never drops
what the admin put there:

- `dialog:{company}:{digits}`, a JSON object in a string: `pendingAction` is set (type `reactivation_response`),
  every other field keeps its exact value. TTL: `ttl_seconds`, or the key's own TTL when that is longer
  (a dialog without expiry keeps none).
- `messages:{company}:{digits}`, a list of JSON items, oldest first: the message is appended (RPUSH) and only
  the last `max_messages` are kept (LTRIM). A new list gets `ttl_seconds`; an existing TTL is only lengthened.
- `client:{company}:{digits}`, the admin's client card, updated only when it exists: `lastReactivationAt` and
  `reactivationCampaign` are merged into it, whether it is a JSON string or a hash.

How it stays atomic without losing the admin's data: Redis's Lua `cjson` cannot round-trip arbitrary JSON (an
empty array comes back as `{}`, integers past 2^53 lose digits, numbers are printed with 14 significant digits),
so nothing of the admin's is ever decoded and re-encoded. One script splices the text instead: it walks the
object's top-level members (strings and nesting only), drops ours by name and appends the new ones, byte for
byte otherwise, and writes all three keys together. Being one script, it cannot lose to an admin writing in
between, however often the admin writes. Only replacing a dialog that is not a JSON object is a
compare-and-set on the value read (`ContextConflict` after a bounded number of rounds). The scripts are the
`lua/*.lua` files of this package (see `reactivation.handover.scripts`).

A dialog value that is not a JSON object (broken JSON, an array, a value of another Redis type) is not
overwritten silently: it is renamed to `dialog:...:corrupt` (kept 30 days), a warning is logged, and a fresh
object with the pendingAction takes its place. A client card that is not a JSON object is left alone.

The hand-over is idempotent per history row: a marker key `reactivation:handover:{company}:{history_id}` is set
in the same script, so a retried task neither appends the message twice nor revives a pendingAction the admin
has already cleared. All keys of one client must live on one Redis node (no Redis Cluster across slots).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal, cast, get_args

import redis

from reactivation.core.phones import mask_phone
from reactivation.core.vocabulary import Step
from reactivation.handover.keys import DialogKeys, dialog_key, handover_marker_key, key_digits, mask_key
from reactivation.handover.scripts import CLEAR_SCRIPT, READ_SCRIPT, SAVE_SCRIPT

log = logging.getLogger(__name__)

PENDING_ACTION_TYPE = "reactivation_response"
MAX_MESSAGES = 50
# How long a moved-aside corrupt dialog is kept for someone to look at.
CORRUPT_TTL_SECONDS = 30 * 24 * 3600
# Compare-and-set rounds before giving up on replacing a broken dialog; each loses only to a write in between.
MAX_ATTEMPTS = 50

ClientStatus = Literal["absent", "hash", "json", "invalid", "wrongtype"]
MessagesStatus = Literal["appended", "wrongtype"]


class ContextError(Exception):
    """The hand-over could not be written."""


class ContextConflict(ContextError):
    """Other writers changed the keys on every attempt; retry the task later (nothing was written)."""


@dataclass(frozen=True)
class HandoverContext:
    """Everything the AI admin needs to understand a reply to one sent message."""

    company_id: int
    phone: str  # E.164
    history_id: int
    step: Step
    message: str
    sent_at: datetime  # aware
    days_inactive: int
    last_visit_date: date
    interval_days: int
    interval_source: str
    confidence: float | Decimal | None = None
    # The booking system's service id (yclients id) and title, for the admin to pre-fill a booking.
    suggested_service_id: int | None = None
    suggested_service_name: str | None = None
    # How often the row's message was sent again after a delivery failure: each one is handed over on its own.
    resend: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.phone, str) or not self.phone.startswith("+"):
            raise ValueError("phone must be an E.164 number such as +79001234567")
        key_digits(self.phone)
        object.__setattr__(self, "step", Step(self.step))
        if self.sent_at.tzinfo is None or self.sent_at.utcoffset() is None:
            raise ValueError("sent_at must be timezone-aware")
        if not isinstance(self.message, str) or not self.message.strip():
            raise ValueError(f"history {self.history_id}: empty message")

    def pending_action(self) -> dict[str, Any]:
        """The `pendingAction` object, with the AI admin's field names."""
        service = None
        if self.suggested_service_id is not None or self.suggested_service_name:
            service = {"id": self.suggested_service_id, "name": self.suggested_service_name}
        return {
            "type": PENDING_ACTION_TYPE,
            "campaign": self.step.campaign,
            "step": int(self.step),
            "messageType": self.step.message_type,
            "daysInactive": self.days_inactive,
            "lastVisitDate": self.last_visit_date.isoformat(),
            "suggestedService": service,
            "intervalDays": self.interval_days,
            "intervalSource": self.interval_source,
            "confidence": None if self.confidence is None else round(float(self.confidence), 2),
            "messageSent": self.message,
            "messageSentAt": iso_timestamp(self.sent_at),
            "reactivationHistoryId": self.history_id,
        }

    def message_item(self) -> dict[str, Any]:
        """The item appended to the admin's message history."""
        return {"sender": "bot", "text": self.message, "timestamp": iso_timestamp(self.sent_at), "type": "reactivation"}


@dataclass(frozen=True)
class SaveResult:
    """What `save_context` did."""

    already_saved: bool
    attempts: int
    # The key a non-JSON-object dialog value was moved to, if one was (it holds the phone: mask it in logs).
    moved_aside_to: str | None = None
    messages: MessagesStatus | None = None
    client: ClientStatus | None = None


def iso_timestamp(moment: datetime) -> str:
    """UTC with milliseconds and a Z, as JavaScript's toISOString() writes it: "2025-04-15T07:00:00.000Z"."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- helpers -------------------------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number out of range: {text[:20]}")
    return value


def _not_json(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def _as_object(raw: str) -> dict[str, Any] | None:
    """The JSON object in `raw`, or None when it is not one (NaN, Infinity and 1e400 are not JSON either, and
    could not be written back)."""
    try:
        value = json.loads(raw, parse_float=_finite, parse_constant=_not_json)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _dumps(value: Any) -> str:
    """Compact JSON as the admin writes it (UTF-8, not \\u-escaped), falling back to escaping when a string holds
    a lone surrogate that UTF-8 cannot carry."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text


def _member(name: str, value: Any) -> str:
    """One JSON object member, `"name":value`, for the scripts to splice in."""
    return f"{_dumps(name)}:{_dumps(value)}"


def _backoff(attempt: int) -> None:
    # Immediate retries first (a conflict means one write landed in between); then a little jitter so that two
    # writers in a tight loop stop colliding.
    if attempt >= 3:
        time.sleep(random.random() * min(0.001 * 2 ** (attempt - 3), 0.05))


# --- the scripts' calls, typed -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredValue:
    """A key as read.lua found it: its Redis type ("none", "string", "hash"...) and, for a string, its exact bytes."""

    kind: str
    raw: bytes

    @classmethod
    def read(cls, client: redis.Redis, key: str) -> StoredValue:
        """Read `key` whatever its type, without decoding its bytes."""
        kind, hex_value = (_text(v) for v in READ_SCRIPT(client, [key], []))
        return cls(kind, bytes.fromhex(hex_value))

    def as_object(self) -> dict[str, Any] | None:
        """The JSON object this string holds, or None (another type, not UTF-8, not a JSON object)."""
        if self.kind != "string":
            return None
        try:
            return _as_object(self.raw.decode("utf-8"))
        except UnicodeDecodeError:
            return None

    @property
    def needs_replacing(self) -> bool:
        """A dialog that exists but is not a JSON object: moved aside rather than spliced into."""
        return self.kind != "none" and self.as_object() is None


@dataclass(frozen=True)
class SaveReply:
    """What save.lua answered: `done` (this row was handed over before), `conflict` (the dialog was not what was
    read; nothing written), or `ok` with what it found in the messages list and the client card."""

    status: Literal["ok", "done", "conflict"]
    moved_aside: bool = False
    messages: MessagesStatus | None = None
    client: ClientStatus | None = None

    @classmethod
    def parse(cls, reply: Sequence[Any]) -> SaveReply:
        """The reply as save.lua returns it (strings or bytes, the moved flag an integer); ContextError otherwise."""
        values = [_text(v) for v in reply]
        match values:
            case ["done"] | ["conflict"]:
                return cls(cast(Literal["done", "conflict"], values[0]))
            case ["ok", "0" | "1" as moved, messages, client] if messages in get_args(
                MessagesStatus
            ) and client in get_args(ClientStatus):
                return cls("ok", moved == "1", cast(MessagesStatus, messages), cast(ClientStatus, client))
        raise ContextError(f"unexpected answer from save.lua: {values[:4]!r}")


@dataclass(frozen=True)
class SaveCall:
    """The KEYS and ARGV of save.lua for one hand-over (see the top of lua/save.lua); the same on every attempt
    but for the dialog as read just before."""

    keys: DialogKeys
    marker: str
    # Members spliced into the admin's objects as text, `"name":value`.
    action_member: str
    card_members: tuple[str, str]
    ttl_ms: int
    message_item: str
    max_messages: int
    sent_at: str
    campaign: str
    corrupt_ttl_ms: int = CORRUPT_TTL_SECONDS * 1000

    @classmethod
    def build(cls, context: HandoverContext, *, prefix: str, ttl_seconds: int, max_messages: int) -> SaveCall:
        """The call for `context`; ValueError for a TTL or message limit below one."""
        if ttl_seconds < 1:
            raise ValueError("ttl_seconds must be positive")
        if max_messages < 1:
            raise ValueError("max_messages must be positive")
        sent_at = iso_timestamp(context.sent_at)
        campaign = context.step.campaign
        return cls(
            keys=DialogKeys.build(prefix, context.company_id, context.phone),
            marker=handover_marker_key(prefix, context.company_id, context.history_id, context.resend),
            action_member=_member("pendingAction", context.pending_action()),
            card_members=(_member("lastReactivationAt", sent_at), _member("reactivationCampaign", campaign)),
            ttl_ms=ttl_seconds * 1000,
            message_item=_dumps(context.message_item()),
            max_messages=max_messages,
            sent_at=sent_at,
            campaign=campaign,
        )

    def key_names(self) -> list[str]:
        """KEYS, in the script's order."""
        return [self.keys.dialog, self.keys.messages, self.keys.client, self.keys.corrupt, self.marker]

    def arguments(self, dialog: StoredValue) -> list[Any]:
        """ARGV, in the script's order, for the dialog as read; its value goes along only when it is replaced, for
        the script to check that it is still the same."""
        replace = dialog.needs_replacing
        return [
            self.action_member,
            self.ttl_ms,
            self.message_item,
            self.max_messages,
            *self.card_members,
            self.sent_at,
            self.campaign,
            self.corrupt_ttl_ms,
            "1" if replace else "0",
            dialog.kind,
            dialog.raw if replace else "",
        ]

    def run(self, client: redis.Redis, dialog: StoredValue) -> SaveReply:
        """Run save.lua once against the dialog as read."""
        return SaveReply.parse(SAVE_SCRIPT(client, self.key_names(), self.arguments(dialog)))


# --- the hand-over -------------------------------------------------------------------------------------------------


def save_context(
    client: redis.Redis,
    context: HandoverContext,
    *,
    prefix: str,
    ttl_seconds: int,
    max_messages: int = MAX_MESSAGES,
    max_attempts: int = MAX_ATTEMPTS,
) -> SaveResult:
    """Write the hand-over for one sent message atomically; idempotent per history row.

    Raises ContextConflict when other writers won every round (retry later), redis.RedisError when Redis is
    unreachable (retry later). Never raises for what it finds in the admin's keys.
    """
    call = SaveCall.build(context, prefix=prefix, ttl_seconds=ttl_seconds, max_messages=max_messages)
    where = {"company_id": context.company_id, "history_id": context.history_id, "phone": mask_phone(context.phone)}
    for attempt in range(1, max_attempts + 1):
        dialog = StoredValue.read(client, call.keys.dialog)
        reply = call.run(client, dialog)
        if reply.status != "conflict":
            return _saved(reply, call=call, dialog=dialog, attempt=attempt, where=where)
        _backoff(attempt)
    log.warning(
        "context hand-over lost every compare-and-set round on a broken dialog",
        extra={**where, "attempts": max_attempts},
    )
    raise ContextConflict(f"history {context.history_id}: the dialog kept changing during {max_attempts} attempts")


def _saved(reply: SaveReply, *, call: SaveCall, dialog: StoredValue, attempt: int, where: dict[str, Any]) -> SaveResult:
    """Log what the script did and say it as a SaveResult."""
    if reply.status == "done":
        log.info("context already handed over", extra=where)
        return SaveResult(already_saved=True, attempts=attempt)
    moved = call.keys.corrupt if reply.moved_aside else None
    if moved:
        log.warning(
            "dialog value was not a JSON object; moved aside",
            extra={**where, "moved_to": mask_key(moved), "redis_type": dialog.kind, "length": len(dialog.raw)},
        )
    if reply.messages == "wrongtype":
        log.warning("messages key is not a list; message not appended", extra=where)
    if reply.client in ("invalid", "wrongtype"):
        log.warning("client card is not a JSON object or hash; left alone", extra={**where, "client": reply.client})
    log.info("context handed over", extra={**where, "attempts": attempt, "client": reply.client})
    return SaveResult(
        already_saved=False, attempts=attempt, moved_aside_to=moved, messages=reply.messages, client=reply.client
    )


def read_pending_action(client: redis.Redis, *, prefix: str, company_id: int, phone: str) -> dict[str, Any] | None:
    """This product's pendingAction in the client's dialog, or None (no dialog, another action, not JSON)."""
    dialog = StoredValue.read(client, dialog_key(prefix, company_id, phone)).as_object()
    action = dialog.get("pendingAction") if dialog else None
    if isinstance(action, dict) and action.get("type") == PENDING_ACTION_TYPE:
        return action
    return None


def clear_pending_action(
    client: redis.Redis,
    *,
    prefix: str,
    company_id: int,
    phone: str,
    history_id: int | None = None,
) -> bool:
    """Remove this product's pendingAction from the dialog, keeping every other field and the key's TTL.

    Only an action of type `reactivation_response` is removed, and with `history_id` only the one for that history
    row (so a newer message's action survives). True when one was removed.
    """
    key = dialog_key(prefix, company_id, phone)
    removed = int(CLEAR_SCRIPT(client, [key], [PENDING_ACTION_TYPE, "" if history_id is None else history_id]))
    if removed:
        log.info(
            "pending action cleared",
            extra={"company_id": company_id, "phone": mask_phone(phone), "history_id": history_id},
        )
    return removed == 1


def withdraw_handover(client: redis.Redis, context: HandoverContext, *, prefix: str, ttl_seconds: int) -> bool:
    """Undo the hand-over of a message that was never delivered: its pendingAction is removed (only that row's),
    its item leaves the messages list, and its marker is set, so that a hand-over still on its way for it writes
    nothing. Idempotent; True when a pendingAction was removed."""
    removed = clear_pending_action(
        client, prefix=prefix, company_id=context.company_id, phone=context.phone, history_id=context.history_id
    )
    keys = DialogKeys.build(prefix, context.company_id, context.phone)
    marker = handover_marker_key(prefix, context.company_id, context.history_id, context.resend)
    with client.pipeline(transaction=True) as pipe:
        # The item as save.lua appended it: the same JSON text, so LREM finds it.
        pipe.lrem(keys.messages, 0, _dumps(context.message_item()))
        pipe.set(marker, "withdrawn", ex=max(1, ttl_seconds))
        try:
            pipe.execute()
        except redis.ResponseError:
            # The messages key holds another type (the admin's): leave it alone, but mark the hand-over done.
            client.set(marker, "withdrawn", ex=max(1, ttl_seconds))
    log.info(
        "hand-over withdrawn: the message was not delivered",
        extra={
            "company_id": context.company_id,
            "history_id": context.history_id,
            "phone": mask_phone(context.phone),
            "pending_action_removed": removed,
        },
    )
    return removed
