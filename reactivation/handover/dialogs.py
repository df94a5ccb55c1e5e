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
compare-and-set on the value read (`ContextConflict` after a bounded number of rounds). Scripts run with EVALSHA,
loaded once per server.

A dialog value that is not a JSON object (broken JSON, an array, a value of another Redis type) is not
overwritten silently: it is renamed to `dialog:...:corrupt` (kept 30 days), a warning is logged, and a fresh
object with the pendingAction takes its place. A client card that is not a JSON object is left alone.

The hand-over is idempotent per history row: a marker key `reactivation:handover:{company}:{history_id}` is set
in the same script, so a retried task neither appends the message twice nor revives a pendingAction the admin
has already cleared. All keys of one client must live on one Redis node (no Redis Cluster across slots).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

import redis

from reactivation.core.phones import mask_phone
from reactivation.core.vocabulary import Step
from reactivation.handover.keys import DialogKeys, dialog_key, handover_marker_key, key_digits, mask_key

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


# --- Lua -------------------------------------------------------------------------------------------------------------

# Shared by the scripts: the text of a JSON object with some top-level members dropped and others appended. Only
# strings and nesting are parsed (enough to find where members begin and end); every other byte is copied.
_SPLICE = r"""
local function members(s)
  local first = s:find('%S')
  if not first or s:sub(first, first) ~= '{' then return nil end
  local list, depth, start, key, i = {}, 0, first + 1, nil, first
  while true do
    local j = s:find('[{}%[%]",]', i)
    if not j then return nil end
    local c = s:sub(j, j)
    if c == '"' then
      local k = j + 1
      while true do
        local q = s:find('[\\"]', k)
        if not q then return nil end
        if s:sub(q, q) == '"' then k = q; break end
        k = q + 2
      end
      if depth == 1 and key == nil then key = s:sub(j, k) end
      i = k + 1
    elseif c == '{' or c == '[' then
      depth = depth + 1
      i = j + 1
    elseif c == ',' then
      if depth == 1 then
        list[#list + 1] = {s:sub(start, j - 1), key}
        start, key = j + 1, nil
      end
      i = j + 1
    else
      depth = depth - 1
      if depth < 0 then return nil end
      if depth == 0 then
        if c ~= '}' or s:find('%S', j + 1) then return nil end
        list[#list + 1] = {s:sub(start, j - 1), key}
        return list
      end
      i = j + 1
    end
  end
end

-- nil when s is not an object; otherwise the object without the members named in `drop` (quoted keys), with
-- `add` (member texts) appended, and the text of the last member dropped.
local function splice(s, drop, add)
  local list = members(s)
  if list == nil then return nil end
  local kept, dropped = {}, nil
  for _, m in ipairs(list) do
    if m[2] ~= nil and drop[m[2]] then
      dropped = m[1]
    elseif not m[1]:find('^%s*$') then
      kept[#kept + 1] = m[1]
    end
  end
  for _, text in ipairs(add) do kept[#kept + 1] = text end
  return '{' .. table.concat(kept, ',') .. '}', dropped
end
"""

# KEYS: dialog, messages, client, corrupt, marker.
# ARGV: 1 the pendingAction member, 2 ttl ms, 3 message item, 4 max messages, 5 the lastReactivationAt member,
#       6 the reactivationCampaign member, 7 lastReactivationAt, 8 reactivationCampaign, 9 corrupt ttl ms,
#       10 "1" to replace a dialog that is not an object, 11 its Redis type and 12 its value as read.
# Every check comes before the first write: a script that fails half-way keeps its earlier writes.
_SAVE = (
    _SPLICE
    + """
if redis.call('EXISTS', KEYS[5]) == 1 then return {'done'} end
local dtype = redis.call('TYPE', KEYS[1])['ok']
local ttl = tonumber(ARGV[2])
local moved = 0
local dialog = nil
if ARGV[10] == '1' then
  if dtype ~= ARGV[11] then return {'conflict'} end
  if dtype == 'string' and redis.call('GET', KEYS[1]) ~= ARGV[12] then return {'conflict'} end
  dialog = '{' .. ARGV[1] .. '}'
  moved = 1
elseif dtype == 'none' then
  dialog = '{' .. ARGV[1] .. '}'
elseif dtype == 'string' then
  dialog = splice(redis.call('GET', KEYS[1]), {['"pendingAction"'] = true}, {ARGV[1]})
  if dialog == nil then return {'conflict'} end
else
  return {'conflict'}
end
local ctype = redis.call('TYPE', KEYS[3])['ok']
local card = nil
if ctype == 'string' then
  card = splice(redis.call('GET', KEYS[3]), {['"lastReactivationAt"'] = true, ['"reactivationCampaign"'] = true},
                {ARGV[5], ARGV[6]})
end
local mtype = redis.call('TYPE', KEYS[2])['ok']

if moved == 1 then
  redis.call('RENAME', KEYS[1], KEYS[4])
  redis.call('PEXPIRE', KEYS[4], tonumber(ARGV[9]))
end
local dttl = redis.call('PTTL', KEYS[1])
if dttl == -1 or dttl > ttl then
  redis.call('SET', KEYS[1], dialog, 'KEEPTTL')
else
  redis.call('SET', KEYS[1], dialog, 'PX', ttl)
end

local mstatus = 'wrongtype'
if mtype == 'none' or mtype == 'list' then
  redis.call('RPUSH', KEYS[2], ARGV[3])
  redis.call('LTRIM', KEYS[2], -tonumber(ARGV[4]), -1)
  local mttl = redis.call('PTTL', KEYS[2])
  if mtype == 'none' or (mttl >= 0 and mttl < ttl) then redis.call('PEXPIRE', KEYS[2], ttl) end
  mstatus = 'appended'
end

local cstatus = 'absent'
if ctype == 'hash' then
  redis.call('HSET', KEYS[3], 'lastReactivationAt', ARGV[7], 'reactivationCampaign', ARGV[8])
  cstatus = 'hash'
elseif ctype == 'string' then
  if card ~= nil then
    redis.call('SET', KEYS[3], card, 'KEEPTTL')
    cstatus = 'json'
  else
    cstatus = 'invalid'
  end
elseif ctype ~= 'none' then
  cstatus = 'wrongtype'
end

redis.call('SET', KEYS[5], '1', 'PX', ttl)
return {'ok', moved, mstatus, cstatus}
"""
)

# KEYS: dialog. ARGV: 1 the action type, 2 the history id ("" = any). Removes the pendingAction member when it is
# ours (and that row's), keeping the key's TTL. Returns 1 removed, 0 nothing of ours there.
_CLEAR = (
    _SPLICE
    + """
if redis.call('TYPE', KEYS[1])['ok'] ~= 'string' then return 0 end
local rest, dropped = splice(redis.call('GET', KEYS[1]), {['"pendingAction"'] = true}, {})
if rest == nil or dropped == nil then return 0 end
local ok, action = pcall(cjson.decode, dropped:match(':(.*)$'))
if not ok or type(action) ~= 'table' or action['type'] ~= ARGV[1] then return 0 end
if ARGV[2] ~= '' and action['reactivationHistoryId'] ~= tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], rest, 'KEEPTTL')
return 1
"""
)

# Reads one key whatever its type: {type, value in hex or ""}. Hex, because the value may not be UTF-8 and a
# client that decodes replies would fail on it before we could move it aside.
_GET = """
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'string' then return {t, ''} end
local hex = string.gsub(redis.call('GET', KEYS[1]), '.', function(c) return string.format('%02x', string.byte(c)) end)
return {t, hex}
"""


@dataclass(frozen=True)
class _Script:
    source: str

    @property
    def sha(self) -> str:
        return hashlib.sha1(self.source.encode("utf-8")).hexdigest()

    def __call__(self, client: redis.Redis, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA; on a server that has not seen the script yet (or was restarted), load it once and retry."""
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            client.script_load(self.source)
            return client.evalsha(self.sha, len(keys), *keys, *args)


SAVE_SCRIPT = _Script(_SAVE)
CLEAR_SCRIPT = _Script(_CLEAR)
GET_SCRIPT = _Script(_GET)


# --- helpers -------------------------------------------------------------------------------------------------------


def _read(client: redis.Redis, key: str) -> tuple[str, bytes]:
    """The key's Redis type and, for a string, its exact bytes."""
    kind, hex_value = (_text(v) for v in GET_SCRIPT(client, [key], []))
    return kind, bytes.fromhex(hex_value)


def _as_object_bytes(raw: bytes) -> dict[str, Any] | None:
    try:
        return _as_object(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None


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
    if ttl_seconds < 1:
        raise ValueError("ttl_seconds must be positive")
    if max_messages < 1:
        raise ValueError("max_messages must be positive")
    keys = DialogKeys.build(prefix, context.company_id, context.phone)
    marker = handover_marker_key(prefix, context.company_id, context.history_id)
    item = _dumps(context.message_item())
    sent_at = iso_timestamp(context.sent_at)
    where = {"company_id": context.company_id, "history_id": context.history_id, "phone": mask_phone(context.phone)}

    action_member = _member("pendingAction", context.pending_action())
    card_members = [_member("lastReactivationAt", sent_at), _member("reactivationCampaign", context.step.campaign)]

    for attempt in range(1, max_attempts + 1):
        dialog_type, dialog_raw = _read(client, keys.dialog)
        replace = dialog_type != "none" and (dialog_type != "string" or _as_object_bytes(dialog_raw) is None)
        outcome = [
            _text(v)
            for v in SAVE_SCRIPT(
                client,
                [keys.dialog, keys.messages, keys.client, keys.corrupt, marker],
                [
                    action_member,
                    ttl_seconds * 1000,
                    item,
                    max_messages,
                    *card_members,
                    sent_at,
                    context.step.campaign,
                    CORRUPT_TTL_SECONDS * 1000,
                    "1" if replace else "0",
                    dialog_type,
                    dialog_raw if replace else "",
                ],
            )
        ]
        if outcome[0] == "conflict":
            _backoff(attempt)
            continue
        if outcome[0] == "done":
            log.info("context already handed over", extra=where)
            return SaveResult(already_saved=True, attempts=attempt)

        moved = keys.corrupt if outcome[1] == "1" else None
        messages_status: MessagesStatus = "appended" if outcome[2] == "appended" else "wrongtype"
        client_status: ClientStatus = outcome[3]  # type: ignore[assignment]
        if moved:
            log.warning(
                "dialog value was not a JSON object; moved aside",
                extra={**where, "moved_to": mask_key(moved), "redis_type": dialog_type, "length": len(dialog_raw)},
            )
        if messages_status == "wrongtype":
            log.warning("messages key is not a list; message not appended", extra=where)
        if client_status in ("invalid", "wrongtype"):
            log.warning(
                "client card is not a JSON object or hash; left alone", extra={**where, "client": client_status}
            )
        log.info("context handed over", extra={**where, "attempts": attempt, "client": client_status})
        return SaveResult(
            already_saved=False,
            attempts=attempt,
            moved_aside_to=moved,
            messages=messages_status,
            client=client_status,
        )
    log.warning(
        "context hand-over lost every compare-and-set round on a broken dialog",
        extra={**where, "attempts": max_attempts},
    )
    raise ContextConflict(f"history {context.history_id}: the dialog kept changing during {max_attempts} attempts")


def read_pending_action(client: redis.Redis, *, prefix: str, company_id: int, phone: str) -> dict[str, Any] | None:
    """This product's pendingAction in the client's dialog, or None (no dialog, another action, not JSON)."""
    kind, raw = _read(client, dialog_key(prefix, company_id, phone))
    if kind != "string":
        return None
    dialog = _as_object_bytes(raw)
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
