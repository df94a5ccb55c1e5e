"""The fake Gemini server other tests and benchmarks rely on: its modes, its bounds, its self-stop."""

from __future__ import annotations

import httpx
import pytest

from tests.fake_gemini import FakeGemini, Reply

URL = "v1beta/models/gemini-3.8-flash:generateContent"
BODY = {"contents": [{"role": "user", "parts": [{"text": "Имя клиента: Мария\nСкидка: 20%"}]}]}


@pytest.mark.parametrize(("mode", "status"), [("good", 200), ("500", 500), ("503", 503), ("429", 429), ("safety", 200)])
def test_modes_answer_every_request_the_same_way(mode: str, status: int) -> None:
    with FakeGemini(mode=mode) as fake, httpx.Client(base_url=fake.base_url, timeout=5) as client:
        statuses = [client.post(URL, json=BODY).status_code for _ in range(3)]
    assert statuses == [status] * 3
    assert len(fake.requests) == 3


def test_the_good_reply_greets_by_the_prompts_name_with_its_discount() -> None:
    with FakeGemini(mode="good") as fake, httpx.Client(base_url=fake.base_url, timeout=5) as client:
        payload = client.post(URL, json=BODY).json()
    text = payload["candidates"][0]["content"]["parts"][0]["text"]
    assert text.startswith("Мария, ") and "20%" in text and text.endswith("?")


def test_the_script_comes_first_then_the_default() -> None:
    script = [Reply.error(500), Reply.rate_limited("3s")]
    with FakeGemini(script=script, mode="good") as fake, httpx.Client(base_url=fake.base_url, timeout=5) as client:
        responses = [client.post(URL, json=BODY) for _ in range(3)]
    assert [r.status_code for r in responses] == [500, 429, 200]
    retry_info = responses[1].json()["error"]["details"][-1]
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
