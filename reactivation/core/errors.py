"""The project's own errors for outbound calls. SDK and HTTP errors are translated into these at the call site,
so that retry decisions (tenacity around one call, Celery around a task) never depend on a vendor's classes."""

from __future__ import annotations


class ExternalError(Exception):
    """A call to another service failed; `kind` is a short stable code ("timeout", "server_error", ...)."""

    def __init__(self, kind: str, message: str = "") -> None:
        super().__init__(f"{kind}: {message}" if message else kind)
        self.kind = kind


class TransientError(ExternalError):
    """Worth trying again: a timeout, a 5xx, a 429, a dropped connection. `retry_after` when the server said."""

    def __init__(self, kind: str, message: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(kind, message)
        self.retry_after = retry_after


class PermanentError(ExternalError):
    """Trying again will not help: a bad request, a wrong key, an unknown model."""
