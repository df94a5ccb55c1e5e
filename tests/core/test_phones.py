import pytest

from reactivation.core.phones import InvalidPhone, mask_phone, normalize_phone, phone_digits

VALID = [
    ("8 (900) 123-45-67", "+79001234567"),
    ("+7 900 1234567", "+79001234567"),
    ("79001234567", "+79001234567"),
    ("9001234567", "+79001234567"),
    ("8-900-123-45-67", "+79001234567"),
    ("+7(900)123-45-67", "+79001234567"),
    ("8 900 123 45 67", "+79001234567"),
    ("+79001234567", "+79001234567"),
    ("7 (900) 123 45 67", "+79001234567"),
    ("89001234567", "+79001234567"),
    ("900-123-45-67", "+79001234567"),
    ("  +7 900 123-45-67  ", "+79001234567"),
    ("8.900.123.45.67", "+79001234567"),
    ("+7 495 123-45-67", "+74951234567"),
    ("8 (495) 123 45 67", "+74951234567"),
    ("+7 (812) 555-12-34", "+78125551234"),
    ("+380 44 123 4567", "+380441234567"),
    ("+1 650 253 0000", "+16502530000"),
    (79001234567, "+79001234567"),
]

INVALID = [
    (None, "no phone"),
    ("", "empty"),
    ("   ", "empty"),
    ("12345", "not a valid number"),
    ("8 (000) 000-00-00", "not a valid number"),
    ("+7 900 123 45 678", "not a valid number"),
    ("7900123456", "not a valid number"),
    ("9001234567890123", "not a valid number"),
    ("abc", "characters other than digits"),
    ("не указан", "characters other than digits"),
    ("+7+900", "misplaced '+'"),
    ("8900+1234567", "misplaced '+'"),
    ("1" * 500, "characters long"),
    ("'; DROP TABLE clients; --", "characters other than digits"),
    ("+7 900 123", "not a valid number"),
    (3.14, "must be text"),
]


@pytest.mark.parametrize(("raw", "expected"), VALID)
def test_every_russian_way_of_writing_a_number_becomes_e164(raw: object, expected: str) -> None:
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize(("raw", "reason"), INVALID)
def test_what_is_not_a_number_is_rejected_with_whose_and_why(raw: object, reason: str) -> None:
    with pytest.raises(InvalidPhone) as error:
        normalize_phone(raw, client_id=42)
    assert str(error.value).startswith("client 42: ")
    assert reason in str(error.value)
    assert error.value.client_id == 42


def test_error_message_never_repeats_the_whole_number() -> None:
    with pytest.raises(InvalidPhone) as error:
        normalize_phone("+7 900 123 45 678")
    assert "90012345678" not in str(error.value)


def test_digits_and_mask() -> None:
    assert phone_digits("+79001234567") == "79001234567"
    assert mask_phone("+79001234567") == "+7********67"
    assert "1234" not in mask_phone("8 (900) 123-45-67")
    assert mask_phone(None) == "-"
