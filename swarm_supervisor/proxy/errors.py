"""Errors the proxy answers with, always in the OpenAI shape.

ApiError                      status + {"error": {"message", "type", "param", "code"}}
├── 400 invalid_request_error bad JSON, a body that is not an object, wrong types
├── 401 authentication_error  the proxy has an API key and the request lacks it
├── 404 invalid_request_error ``model`` names nothing the swarm serves (served.py: model_not_found)
├── 408 invalid_request_error the body did not arrive within ``body_timeout_s``
├── 413 invalid_request_error the body is larger than ``max_body_bytes``
├── 502 upstream_error        every voter failed (500s, invalid JSON, dropped connections)
├── 503 unavailable           no instance is ready (with Retry-After)
└── 504 timeout               the deadline passed before any voter answered

Which failures of the voters (failures.py, one class each) give which of these: ``failures.no_answer``.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse


class ApiError(Exception):
    """An error answered to the client as ``status`` with an OpenAI error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, type=self.type, param=self.param, code=self.code)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


class UpstreamStatusError(ApiError):
    """Every voter answered with the same client error (4xx); passed through as it came."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        err = body.get("error") if isinstance(body.get("error"), dict) else {}
        assert isinstance(err, dict)
        message = str(err.get("message") or f"the instances answered {status}")
        super().__init__(status, message, type=str(err.get("type") or "invalid_request_error"))
        self.upstream_body = body

    def body(self) -> dict[str, Any]:
        out = super().body()
        err = self.upstream_body.get("error")
        if isinstance(err, dict):
            out["error"].update({k: v for k, v in err.items() if k not in out["error"]})
        return out


def error_body(
    message: str, *, type: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def unavailable(retry_after_s: int) -> ApiError:
    return ApiError(
        503,
        "no instance of the swarm is ready yet; retry shortly (`swarm ps` shows their state)",
        type="unavailable",
        code="no_ready_instance",
        headers={"Retry-After": str(retry_after_s)},
    )
