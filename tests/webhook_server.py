"""The webhook receiver served for real by uvicorn on 127.0.0.1 in a thread of the test process, and signed posts."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from starlette.applications import Starlette

STARTUP_SECONDS = 10.0


@contextmanager
def serving(app: Starlette) -> Iterator[str]:
    """Serve `app` on a free port of 127.0.0.1 until the block ends; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="webhook-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_SECONDS
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise RuntimeError("the webhook receiver did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=STARTUP_SECONDS)


def signed(body: Any, secret: str) -> tuple[bytes, dict[str, str]]:
    """The raw JSON body and the headers Meta sends with it, signed with `secret`."""
    raw = json.dumps(body).encode("utf-8")
    signature = "sha256=" + hmac.new(secret.encode("utf-8"), raw, hashlib.sha256).hexdigest()
    return raw, {"Content-Type": "application/json", "X-Hub-Signature-256": signature}


def meta_status(
    message_id: str, status: str, *, at: int, code: int | None = None, callback: str | None = None
) -> dict[str, Any]:
    """Meta's webhook body with one status of one message."""
    item: dict[str, Any] = {"id": message_id, "status": status, "timestamp": str(at), "recipient_id": "79001234567"}
    if code is not None:
        item["errors"] = [{"code": code, "title": f"error {code}"}]
    if callback is not None:
        item["biz_opaque_callback_data"] = callback
    value = {"messaging_product": "whatsapp", "metadata": {"phone_number_id": "555"}, "statuses": [item]}
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
    }
