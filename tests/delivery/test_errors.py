"""The send outcomes: one base holding the fields they share, each adding only its own."""

from __future__ import annotations

from typing import Any

import pytest

from reactivation.core.vocabulary import SkipReason
from reactivation.delivery.errors import (
    PermanentSendError,
    SendError,
    SendOutcomeUnknown,
    SendSkipped,
    TransientSendError,
)


def test_every_outcome_carries_the_shared_fields_and_its_own() -> None:
    # given one of each outcome, with the fields a provider's answer gives
    transient = TransientSendError("t", provider="gateway", code="503", status_code=503, retry_after=1.5)
    permanent = PermanentSendError("p", provider="cloud_api", code="190", status_code=401, affects_all_messages=True)
    skipped = SendSkipped("s", provider="cloud_api", code="131049", status_code=400, reason=SkipReason.MARKETING_LIMIT)
    unknown = SendOutcomeUnknown("u", provider="gateway", code="200", status_code=200)
    # then each is a SendError whose text is the message, with the shared fields
    for error, text in [(transient, "t"), (permanent, "p"), (skipped, "s"), (unknown, "u")]:
        assert isinstance(error, SendError)
        assert (str(error), error.args, error.message) == (text, (text,), text)
    assert [(e.provider, e.code, e.status_code) for e in (transient, permanent, skipped, unknown)] == [
        ("gateway", "503", 503),
        ("cloud_api", "190", 401),
        ("cloud_api", "131049", 400),
        ("gateway", "200", 200),
    ]
    # and its own
    assert (transient.retry_after, transient.maybe_delivered) == (1.5, False)
    assert permanent.affects_all_messages
    assert skipped.reason is SkipReason.MARKETING_LIMIT


def test_the_optional_fields_default_to_nothing_known() -> None:
    transient = TransientSendError("no answer", provider="gateway")
    permanent = PermanentSendError("rejected", provider="gateway")
    assert (transient.code, transient.status_code, transient.retry_after, transient.maybe_delivered) == (
        None,
        None,
        None,
        False,
    )
    assert not permanent.affects_all_messages


@pytest.mark.parametrize(
    ("outcome", "arguments", "keywords"),
    [
        (TransientSendError, ("text", "gateway"), {}),
        (PermanentSendError, ("text",), {}),
        (SendSkipped, ("text",), {"provider": "cloud_api"}),
        (SendSkipped, (SkipReason.UNDELIVERABLE, "text"), {"provider": "cloud_api"}),
    ],
    ids=["provider-positional", "no-provider", "no-reason", "reason-positional"],
)
def test_everything_but_the_message_is_named_and_the_provider_and_reason_are_required(
    outcome: type[SendError], arguments: tuple[Any, ...], keywords: dict[str, Any]
) -> None:
    with pytest.raises(TypeError):
        outcome(*arguments, **keywords)


def test_outcomes_are_raised_and_told_apart_as_exceptions_are() -> None:
    # two outcomes with equal fields are still two errors (compared and hashed by identity)
    first, second = PermanentSendError("same", provider="gateway"), PermanentSendError("same", provider="gateway")
    assert first != second and len({first, second}) == 2
    with pytest.raises(PermanentSendError, match="same") as caught:
        raise first
    assert caught.value is first and caught.value.__traceback__ is not None
