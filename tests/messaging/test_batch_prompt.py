"""The batch prompt, the answer's schema and each answered item judged on its own (pure)."""

from __future__ import annotations

import json

import pytest

from reactivation.core.vocabulary import Step
from reactivation.messaging.batch_prompt import (
    DUPLICATE,
    MISSING,
    OTHER_CLIENT,
    build_batch_prompt,
    item_line,
    judge_items,
    parse_items,
    response_schema,
    wording,
)
from reactivation.messaging.gemini import PromptFacts
from tests.fake_gemini import good_item

BARKHAT = "Салон «Бархат»"
BORODA = "Барбершоп «Борода»"


def facts(step: Step, name: str | None, salon: str = BARKHAT, service: str | None = "Стрижка мужская") -> PromptFacts:
    return PromptFacts(step=step, first_name=name, service_title=service, company_name=salon)


ITEMS = [
    facts(Step.GENTLE, "Мария"),
    facts(Step.OFFER, None, service=None),
    facts(Step.WIN_BACK, "Олег", BORODA, "Бритьё головы"),
]


def test_each_item_says_only_its_number_first_name_service_and_step() -> None:
    assert item_line(3, ITEMS[2]) == "3. Имя: Олег. Последняя услуга: Бритьё головы. Тип: win_back."
    assert item_line(2, ITEMS[1]) == "2. Имя: неизвестно. Последняя услуга: не указана. Тип: offer."
    # and the prompt facts have room for nothing else (152-FZ: no phone, surname, dates or ids)
    assert set(PromptFacts.__dataclass_fields__) == {"step", "first_name", "service_title", "company_name"}


def test_the_prompt_numbers_the_items_under_their_salon_and_asks_for_variety_and_an_array() -> None:
    prompt = build_batch_prompt(ITEMS)
    assert prompt.index(f"Салон: {BARKHAT}") < prompt.index("1. Имя: Мария") < prompt.index("2. Имя: неизвестно")
    assert prompt.index("2. Имя: неизвестно") < prompt.index(f"Салон: {BORODA}") < prompt.index("3. Имя: Олег")
    # the instructions of the seed per message type, only for the types asked for
    assert "до 150 символов" in prompt and "скидка 10%" in prompt and "скидка 20%" in prompt
    assert "не должны повторять друг друга" in prompt
    assert 'JSON-массив из 3 объектов {"n": номер пункта, "text": текст сообщения}' in prompt
    only_gentle = build_batch_prompt([ITEMS[0]])
    assert "скидка 10%" not in only_gentle and "- gentle:" in only_gentle


def test_a_title_that_is_no_title_does_not_reach_the_prompt() -> None:
    prompt = build_batch_prompt([facts(Step.GENTLE, None, service="{x} 79001234567")])
    assert "Последняя услуга: не указана" in prompt and "7900" not in prompt


def test_the_schema_is_an_array_of_exactly_n_numbered_texts() -> None:
    schema = response_schema(4).model_dump(exclude_none=True)
    assert schema["type"] == "ARRAY" and schema["min_items"] == schema["max_items"] == 4
    assert set(schema["items"]["properties"]) == {"n", "text"}


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ([{"n": 2, "text": "b"}, {"n": 1, "text": "a"}], {1: "a", 2: "b"}),
        ([{"n": 1, "text": "a"}, {"n": 1, "text": "again"}], {1: "a"}),
        ([{"n": 0, "text": "x"}, {"n": 3, "text": "y"}, {"n": True, "text": "z"}, {"n": "1", "text": "w"}], {}),
        ([{"n": 1}, {"text": "t"}, {"n": 2, "text": None}, "loose"], {}),
        ({"n": 1, "text": "a"}, None),
    ],
)
def test_answers_are_read_by_position(answer: object, expected: dict[int, str] | None) -> None:
    assert parse_items(json.dumps(answer), 2) == expected


def test_an_answer_that_is_not_json_is_nothing() -> None:
    assert parse_items("Мария, здравствуйте! Записать вас?", 1) is None


def test_each_item_is_judged_on_its_own() -> None:
    answers = {
        1: good_item(0, "Мария", "gentle"),
        # item 2 is missing
        3: "Oleg, we give you 20% off. Book?",
    }
    verdicts = judge_items(answers, ITEMS)
    assert verdicts[0].ok and verdicts[0].result is not None and verdicts[0].result.text.startswith("Мария")
    assert verdicts[1].reason == MISSING
    assert (
        verdicts[2].reason is not None
        and verdicts[2].reason.startswith("rejected:")
        and "not_russian" in str(verdicts[2].reason)
    )


def test_the_same_wording_twice_is_caught_whatever_the_names() -> None:
    # given two clients of two salons, told the same thing with their own names and their salon's
    first = facts(Step.OFFER, "Мария", BARKHAT)
    second = facts(Step.OFFER, "Анна", BORODA)
    text = "{name}, здравствуйте! Это {salon}. Для вас скидка 10% на визит. Записать вас?"
    answers = {1: text.format(name="Мария", salon=BARKHAT), 2: text.format(name="Анна", salon=BORODA)}
    verdicts = judge_items(answers, [first, second])
    # then the first is used and the second, the same text with other names, is not
    assert verdicts[0].ok and verdicts[1].reason == DUPLICATE
    assert wording(answers[1], first) == wording(answers[2], second)
    # and wording already written for the batch counts too (a retry must not repeat it)
    again = judge_items({1: answers[2]}, [second], taken=[wording(answers[1], first)])
    assert again[0].reason == DUPLICATE


def test_another_clients_name_in_a_message_is_a_leak() -> None:
    answers = {
        1: "Мария, здравствуйте! Давно вас не было. Записать вас?",
        2: "Анна, здравствуйте! Мария тоже давно не была у нас. Записать вас?",
    }
    pair = [facts(Step.GENTLE, "Мария"), facts(Step.GENTLE, "Анна")]
    verdicts = judge_items(answers, pair)
    assert verdicts[0].ok and verdicts[1].reason == OTHER_CLIENT
    # a retry of one item knows the batch's other names
    alone = judge_items({1: answers[2]}, [pair[1]], others=["Мария"])
    assert alone[0].reason == OTHER_CLIENT
    # a namesake is no leak, and a name is matched as a name ("Вера"), not as a word ("вера")
    namesakes = judge_items({1: answers[1], 2: answers[1].replace("Давно", "Очень давно")}, [pair[0], pair[0]])
    assert all(v.ok for v in namesakes)
    vera = judge_items({1: "Мария, здравствуйте! Вера в лучшее с нами. Записать вас?"}, [pair[0]], others=["вера"])
    assert vera[0].ok
