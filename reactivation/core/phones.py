"""Phone numbers: every Russian way of writing one, to E.164; masking for logs."""

from __future__ import annotations

import re

import phonenumbers

DEFAULT_REGION = "RU"
# Longer than any real number written with separators; beyond it the input is not a phone.
_MAX_INPUT_LENGTH = 40
_ALLOWED = re.compile(r"^[\d\s()+\-.]+$")


class InvalidPhone(ValueError):
    """A value that is not a usable phone number; the message says whose and why.

    `reason` never holds the number itself: the message (which logs and history rows keep) shows it masked, and
    an operator who typed it is shown it as typed, next to the reason.
    """

    def __init__(self, reason: str, *, client_id: int | None = None, masked: str | None = None) -> None:
        whose = f"client {client_id}: " if client_id is not None else ""
        shown = f" ({masked})" if masked else ""
        super().__init__(f"{whose}{reason}{shown}")
        self.reason = reason
        self.client_id = client_id


def normalize_phone(raw: object, *, client_id: int | None = None, region: str = DEFAULT_REGION) -> str:
    """Return the number in E.164 ("+79001234567") or raise InvalidPhone saying which client and why."""
    if raw is None:
        raise InvalidPhone("no phone number", client_id=client_id)
    if isinstance(raw, int):
        raw = str(raw)
    if not isinstance(raw, str):
        raise InvalidPhone(f"phone must be text, got {type(raw).__name__}", client_id=client_id)
    text = raw.strip()
    if not text:
        raise InvalidPhone("empty phone number", client_id=client_id)
    if len(text) > _MAX_INPUT_LENGTH:
        raise InvalidPhone(f"phone is {len(text)} characters long", client_id=client_id)
    if not _ALLOWED.match(text):
        raise InvalidPhone("phone contains characters other than digits and separators", client_id=client_id)
    if text.count("+") > 1 or ("+" in text and not text.startswith("+")):
        raise InvalidPhone("misplaced '+' in phone", client_id=client_id)

    digits = re.sub(r"\D", "", text)
    # "79001234567" is the international form written without its '+'; "89001234567" is the
    # national form with trunk prefix 8, which the library already understands.
    if not text.startswith("+") and region == "RU" and len(digits) == 11 and digits.startswith("7"):
        text = "+" + digits
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone(f"not a phone number ({exc})", client_id=client_id) from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone("not a valid number", client_id=client_id, masked=mask_phone(digits))
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def try_normalize_phone(raw: object, *, region: str = DEFAULT_REGION) -> str | None:
    """E.164 or None, for places where an unusable number is a skip rather than an error."""
    try:
        return normalize_phone(raw, region=region)
    except InvalidPhone:
        return None


def phone_digits(e164: str) -> str:
    """E.164 without its '+', the form in the AI admin's Redis keys (`dialog:962302:79001234567`)."""
    return e164.lstrip("+")


def mask_phone(phone: object) -> str:
    """Keep the country code and the last two digits: "+7********67". Safe for logs and operators' screens.

    A value masked already is returned as it is: a log field that holds a masked phone is not masked twice.
    """
    if phone is None:
        return "-"
    if "*" in str(phone):
        return str(phone)
    digits = re.sub(r"\D", "", str(phone))
    if len(digits) < 4:
        return "*" * len(digits)
    plus = "+" if str(phone).strip().startswith("+") else ""
    head = plus + digits[0] if len(digits) >= 11 else ""
    body = digits[1:] if head else digits
    return head + "*" * (len(body) - 2) + body[-2:]
