"""The words every layer shares, each kept in one enum: a history row's status, why a contact was skipped, what a
provider reports about a message, the steps of the per-client chain, the steps of the win-back flow, a campaign
run's status and what a hand-over still owes Redis.

Their strings live here and nowhere else. The database checks the history status against the same list (a CHECK
constraint, migration t0010; a test holds the two together).
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Status(StrEnum):
    """Where a history row stands: in flight from `claimed` to `delivered`, then final."""

    CLAIMED = "claimed"
    INTERVAL_SELECTED = "interval_selected"
    GENERATED = "generated"
    SENDING = "sending"
    DELIVERED = "delivered"
    SENT = "sent"
    SKIPPED = "skipped"
    FAILED = "failed"
    UNKNOWN = "unknown"
    HOLDOUT = "holdout"


class SkipReason(StrEnum):
    """Why a contact was not made; stored as the history row's skip_reason."""

    # The client, at the selection or at a step's re-check.
    CLIENT_GONE = "client_gone"
    BLACKLISTED = "blacklisted"
    OPTED_OUT = "opted_out"
    NO_VISIT = "no_visit"
    LAPSE_CHANGED = "lapse_changed"
    VISITED_SINCE = "visited_since"
    UPCOMING_BOOKING = "upcoming_booking"
    BOOKED_SINCE = "booked_since"
    INVALID_PHONE = "invalid_phone"
    FLOW_STOPPED = "flow_stopped"
    # A reply holds the lapse: the client moved away (while the phone stays the same), or asked to wait.
    MOVED_AWAY = "moved_away"
    SNOOZED = "snoozed"
    # The claim: the company requires consent and this phone has none.
    NO_CONSENT = "no_consent"
    # The sweep: still in flight long after the claim; a stale message is worse than none.
    EXPIRED = "expired"
    # The WhatsApp provider declined the recipient.
    MARKETING_LIMIT = "whatsapp_marketing_limit"
    UNDELIVERABLE = "whatsapp_undeliverable"
    MARKETING_OPT_OUT = "whatsapp_marketing_opt_out"
    REENGAGEMENT_REQUIRED = "whatsapp_reengagement_required"
    EXPERIMENT = "whatsapp_experiment"
    # Meta reported this phone undeliverable (131026) for this company: not contacted until its number changes.
    NOT_ON_WHATSAPP = "not_on_whatsapp"
    # The salon's own WhatsApp sender: none is configured, or the provider refused it. Never another salon's.
    SENDER_MISSING = "sender_missing"
    SENDER_REFUSED = "sender_refused"


class DeliveryStatus(StrEnum):
    """What a WhatsApp provider reports about a message it accepted (its status webhook), in the order they happen;
    `failed` ends a message that was never delivered."""

    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"


class ChainStep(StrEnum):
    """The per-client chain's steps, in the order they run; each is one Celery task of the same name."""

    SELECT_INTERVAL = "select_interval"
    GENERATE_MESSAGE = "generate_message"
    SEND_MESSAGE = "send_message"
    PERSIST_HISTORY = "persist_history"
    SAVE_CONTEXT = "save_context"

    def and_after(self) -> tuple[ChainStep, ...]:
        """This step and every step after it: the rest of a chain resumed here."""
        steps = tuple(ChainStep)
        return steps[steps.index(self) :]


class PendingHandover(StrEnum):
    """What a history row's hand-over to the AI admin still owes Redis (its `handover_pending`), when Redis was
    unreachable as the fact was recorded."""

    # A negative reply, an opt-out or a booking: the row's pendingAction must leave the client's dialog.
    CLEAR = "clear"


class RunStatus(StrEnum):
    """A campaign run: planned by beat (or a dispatch by hand), running, done."""

    PLANNED = "planned"
    RUNNING = "running"
    DONE = "done"


class Step(IntEnum):
    """The win-back flow's steps: what each is called, what it offers, and the AI admin's campaign name.

    Step k is due at k × interval + grace days after the last visit (reactivation.timing.steps does that arithmetic).
    """

    GENTLE = 1
    OFFER = 2
    WIN_BACK = 3

    @property
    def message_type(self) -> str:
        return _MESSAGE_TYPES[self]

    @property
    def campaign(self) -> str:
        """The AI admin's name for it; the seed's 30/60/90-day campaigns."""
        return _CAMPAIGNS[self]

    @property
    def discount_percent(self) -> int:
        return _DISCOUNTS[self]

    @property
    def max_length(self) -> int:
        """The longest message of this type, in characters."""
        return _MAX_LENGTHS[self]

    @classmethod
    def from_message_type(cls, message_type: str) -> Step:
        for step, name in _MESSAGE_TYPES.items():
            if name == message_type:
                return step
        raise ValueError(f"unknown message type {message_type!r}; expected gentle, offer or win_back")


_MESSAGE_TYPES = {Step.GENTLE: "gentle", Step.OFFER: "offer", Step.WIN_BACK: "win_back"}
_CAMPAIGNS = {Step.GENTLE: "dormant_30", Step.OFFER: "dormant_60", Step.WIN_BACK: "dormant_90"}
_DISCOUNTS = {Step.GENTLE: 0, Step.OFFER: 10, Step.WIN_BACK: 20}
_MAX_LENGTHS = {Step.GENTLE: 150, Step.OFFER: 200, Step.WIN_BACK: 250}
# Whatever the type, no message is longer than this.
MAX_MESSAGE_LENGTH = 250
