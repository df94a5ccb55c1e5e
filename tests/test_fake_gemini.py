"""The fake Gemini server other tests and benchmarks rely on: its modes, its bounds, its self-stop."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.fake_gemini import QUOTA_IDS, THINKING, FakeGemini, Reply

URL = "v1beta/models/gemini-3.8-flash:generateContent"
BODY = {"contents": [{"role": "user", "parts": [{"text": "Имя клиента: Мария\nСкидка: 20%"}]}]}


@pytest.mark.parametrize(("mode", "status"), [("good", 200), ("500", 500), ("503", 503), ("429", 429), ("safety", 200)])
def test_modes_answer_every_request_the_same_way(mode: str, status: int) -> None:
    with FakeGemini(mode=mode) as fake, httpx.Client(base_url=fake.base_url, timeout=5) as client:
        statuses = [client.post(URL, json=BODY).status_code for _ in range(3)]
    assert statuses == [status] * 3
    assert len(fake.requests) == 3


def test_the_good_plain_reply_gives_the_prompts_discount() -> None:
    with FakeGemini(mode="good") as fake, httpx.Client(base_url=fake.base_url, timeout=5) as client:
        payload = client.post(URL, json=BODY).json()
    text = payload["candidates"][0]["content"]["parts"][0]["text"]
    assert "20%" in text and text.endswith("?")


BATCH_PROMPT = (
    "1. Имя: Мария. Последняя услуга: Стрижка. Тип: offer.\n"
    "2. Имя: неизвестно. Последняя услуга: не указана. Тип: gentle.\n"
    "3. Имя: Олег. Последняя услуга: Бритьё. Тип: win_back."
)


def batch_body(level: str | None = "LOW", cap: int | None = None) -> dict[str, object]:
    config: dict[str, object] = {"responseMimeType": "application/json", "responseSchema": {"type": "ARRAY"}}
    if level is not None:
        config["thinkingConfig"] = {"thinkingLevel": level}
    if cap is not None:
        config["maxOutputTokens"] = cap
    return {"contents": [{"role": "user", "parts": [{"text": BATCH_PROMPT}]}], "generationConfig": config}


def post(fake: FakeGemini, body: dict[str, object]) -> httpx.Response:
    with httpx.Client(base_url=fake.base_url, timeout=5) as client:
        return client.post(URL, json=body)


def test_a_batch_request_is_answered_item_by_item_with_its_usage() -> None:
    with FakeGemini() as fake:
        payload = post(fake, batch_body()).json()
    items = json.loads(payload["candidates"][0]["content"]["parts"][0]["text"])
    assert [item["n"] for item in items] == [1, 2, 3]
    assert items[0]["text"].startswith("Мария, ") and "10%" in items[0]["text"]
    assert "%" not in items[1]["text"] and "Олег" in items[2]["text"] and "20%" in items[2]["text"]
    fixed, per_item = THINKING["LOW"]
    usage = payload["usageMetadata"]
    assert usage["thoughtsTokenCount"] == fixed + 3 * per_item
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"] + fixed + 3 * per_item
    assert fake.requests[0].is_batch and [i.name for i in fake.requests[0].items] == ["Мария", None, "Олег"]


def test_without_a_level_the_fake_thinks_at_the_models_default_and_minimal_not_at_all() -> None:
    with FakeGemini() as fake:
        default = post(fake, batch_body(level=None)).json()["usageMetadata"]
        minimal = post(fake, batch_body(level="MINIMAL")).json()["usageMetadata"]
    assert default["thoughtsTokenCount"] == THINKING["MEDIUM"][0] + 3 * THINKING["MEDIUM"][1]
    assert "thoughtsTokenCount" not in minimal


def test_scripted_bad_items_are_bad_in_their_own_way() -> None:
    modes = {1: "too_long", 2: "missing", 3: "other_name"}
    with FakeGemini(script=[Reply.batch(modes)]) as fake:
        payload = post(fake, batch_body()).json()
    items = {item["n"]: item["text"] for item in json.loads(payload["candidates"][0]["content"]["parts"][0]["text"])}
    assert set(items) == {1, 3} and len(items[1]) > 250 and "Мария" in items[3]
    with pytest.raises(ValueError, match="unknown item modes"):
        Reply.batch({1: "rude"})


def test_an_answer_over_the_output_cap_is_cut_with_max_tokens() -> None:
    with FakeGemini() as fake:
        payload = post(fake, batch_body(level="HIGH", cap=1000)).json()
    candidate = payload["candidates"][0]
    assert candidate["finishReason"] == "MAX_TOKENS"
    with pytest.raises(json.JSONDecodeError):
        json.loads(candidate["content"]["parts"][0]["text"])


@pytest.mark.parametrize("kind", sorted(QUOTA_IDS))
def test_a_quota_reply_names_its_quota(kind: str) -> None:
    with FakeGemini(script=[Reply.quota(kind, "9s")]) as fake:
        response = post(fake, batch_body())
    details = response.json()["error"]["details"]
    assert response.status_code == 429
    assert details[0]["violations"][0].get("quotaId") == QUOTA_IDS[kind]
    assert details[1] == {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "9s"}


def test_an_error_reply_carries_its_rpc_status() -> None:
    with FakeGemini(script=[Reply.error(400, "FAILED_PRECONDITION")]) as fake:
        response = post(fake, batch_body())
    assert response.status_code == 400 and response.json()["error"]["status"] == "FAILED_PRECONDITION"


def test_the_script_comes_first_then_the_default() -> None:
    script = [Reply.error(500), Reply.rate_limited("3s")]
    with FakeGemini(script=script, mode="good") as fake, httpx.Client(base_url=fake.base_url, timeout=5) as client:
        responses = [client.post(URL, json=BODY) for _ in range(3)]
    assert [r.status_code for r in responses] == [500, 429, 200]
    retry_info = responses[1].json()["error"]["details"][-1]  # a per-minute 429 by default
    assert retry_info == {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3s"}


def test_a_hang_outlasts_the_clients_timeout_and_is_released_when_the_server_stops() -> None:
    fake = FakeGemini(mode="hang").start()
    with httpx.Client(base_url=fake.base_url, timeout=0.2) as client, pytest.raises(httpx.ReadTimeout):
        client.post(URL, json=BODY)
    fake.stop()
    assert fake.stopped


def test_the_server_stops_by_itself_after_its_lifetime() -> None:
    fake = FakeGemini(max_lifetime=0.2).start()
    assert fake.wait_stopped(10)


def test_unknown_paths_are_404() -> None:
    with FakeGemini() as fake, httpx.Client(base_url=fake.base_url, timeout=5) as client:
        assert client.post("v1beta/models/x:countTokens", json={}).status_code == 404
    assert not fake.requests
