"""What a send ends in when it is not a success, each outcome telling the caller exactly what it may do next.

- `TransientSendError`: calling again cannot double the message (the request never reached the provider, the
  provider refused it for now, or the gateway de-duplicates by idempotency key). Retry later; `retry_after`
  (seconds) is the provider's hint when it gave one. `maybe_delivered` marks the one case where it may have
  gone out (the gateway gave no answer): when retries run out, such a row is `unknown`; otherwise `failed`.
- `PermanentSendError`: not delivered and never will be as asked (bad number format, bad token, missing
  template...). Final: the row is `failed`. `affects_all_messages` says the cause is the account or the
  configuration, not this client, so every other message will fail the same way.
- `SendSkipped`: not delivered for a reason about the recipient that retrying cannot fix (Meta's per-user
  marketing limit, a number not on WhatsApp, a recipient who stopped marketing messages). Final: the row is
  `skipped` with `reason`. Never retried, so a limit does not turn into a retry storm.
- `SendOutcomeUnknown`: the provider may or may not have delivered it (a Cloud API request that timed out after
  it was sent, a 2xx answer without a message id). Never retried automatically: for marketing messages a lost
  message beats a doubled one. Final: the row is `unknown`.

Two refusals say more than "failed": `TemplateRejected` (Meta refused the approved template as configured: every
message of that step fails the same way until the setting it names is fixed) and `SenderRefused` (the provider
refused the salon's own sender: an unknown gateway session, a phone number id not registered or not this token's).

`InvalidSendRequest` (a ValueError) is raised when building a request from unusable data, and `SenderMissing` when
a salon has no sender to send from; nothing is sent.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass

from reactivation.core.vocabulary import SkipReason

# Meta's codes whose handling outlives the message, whether they come with the send's answer or the status webhook
# (a gateway reports them in its `error` text too).
NOT_ON_WHATSAPP_CODE = "131026"
MARKETING_LIMIT_CODE = "131049"


class InvalidSendRequest(ValueError):
    """The data cannot make a message (phone not E.164, empty text...); nothing was sent."""


class SenderMissing(ValueError):
    """The salon has no sender to send from (no sender_id of its own and no default); nothing was sent."""


# Dataclasses, so that each outcome declares only the fields of its own and the base holds the shared ones.
# eq=False keeps exceptions compared and hashed by identity, as exceptions are.
@dataclass(eq=False)
class SendError(Exception):
    """Base of the outcomes other than success. `code` is the provider's error code (Meta's, or the HTTP status),
    `status_code` the HTTP status when there was an answer; str(error) is safe to store and log."""

    message: str
    _: KW_ONLY
    provider: str
    code: str | None = None
    status_code: int | None = None

    def __post_init__(self) -> None:
        super().__init__(self.message)


@dataclass(eq=False, kw_only=True)
class TransientSendError(SendError):
    """Retrying cannot double the message; retry after `retry_after` seconds if given.

    `maybe_delivered` is True when no answer came back (a gateway read timeout): the gateway's idempotency key
    makes the retry safe, but if retries run out the row should end `unknown`, not `failed`.
    """

    retry_after: float | None = None
    maybe_delivered: bool = False


@dataclass(eq=False, kw_only=True)
class PermanentSendError(SendError):
    """Not delivered and never will be as asked; final (`failed`)."""

    affects_all_messages: bool = False


@dataclass(eq=False, kw_only=True)
class SendSkipped(SendError):
    """Not delivered for a reason about the recipient; final (`skipped` with `reason`), never retried."""

    reason: SkipReason


@dataclass(eq=False, kw_only=True)
class TemplateRejected(PermanentSendError):
    """Meta refused the step's approved template as configured (parameters, format, length, not a template it
    accepts outside the 24-hour window); `setting` names the environment variable to fix. Nothing was sent."""

    setting: str
    affects_all_messages: bool = True


@dataclass(eq=False, kw_only=True)
class SenderRefused(SendError):
    """The provider refused the salon's sender; nothing was sent, and it must not go from another salon's number."""

    sender_id: str | None = None


class SendOutcomeUnknown(SendError):
    """The message may have been delivered; final (`unknown`), never retried automatically."""
