"""Errors of the API: JSON ``{"error": {"code", "message"}}`` with a stable code per kind of refusal."""

from __future__ import annotations

from starlette.responses import JSONResponse

# Every code the API answers with, and its HTTP status (the OpenAPI document lists them).
CODES = {
    "bad-request": 400,
    "missing-key": 401,
    "bad-key": 401,
    "wrong-scope": 403,
    "not-found": 404,
    "method-not-allowed": 405,
    "conflict": 409,
    "too-large": 413,
    "unsupported-media-type": 415,
    "unreadable-image": 422,
    "invalid": 422,
    "rate-limited": 429,
    "no-classifier": 503,
    "no-store": 503,
}


class ApiError(Exception):
    """A refusal: ``code`` (one of CODES) and a human-readable ``message``."""

    def __init__(self, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.headers = code, message, headers or {}

    @property
    def status(self) -> int:
        return CODES[self.code]

    def response(self) -> JSONResponse:
        body = {"error": {"code": self.code, "message": self.message}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)
