"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}`` with the matching HTTP status.

Why their shape: OpenAI clients (the official SDKs, LangChain, curl scripts) read ``error.message`` and
map the status to an exception (400 BadRequestError, 401 AuthenticationError, 404 NotFoundError, 429
RateLimitError), so a user sees our message in their own tool instead of a parse failure.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_MESSAGE_CHARS = 1000  # an error quotes what the client sent; never more than this of it

# OpenAI's error types by status
_TYPES = {**dict.fromkeys((400, 401, 403, 404, 405, 408, 413, 415), "invalid_request_error"), 429: "rate_limit_error",
          500: "server_error", 503: "server_error"}


@dataclass
class ApiError(Exception):
    """A request the server answers with an error; ``param`` names the offending field (OpenAI's convention)."""

    status: int
    message: str
    param: str | None = None
    code: str | None = None

    def __post_init__(self) -> None:
        if len(self.message) > MAX_MESSAGE_CHARS:
            self.message = self.message[: MAX_MESSAGE_CHARS - 1] + "…"
        if self.param is not None and len(self.param) > 200:
            self.param = self.param[:199] + "…"

    def __str__(self) -> str:
        return self.message

    @property
    def type(self) -> str:
        return _TYPES.get(self.status, "invalid_request_error")

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param, code)
