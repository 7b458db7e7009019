"""CORS for the origins in ``proxy.cors_origins``: Starlette's middleware, with a refused preflight
answered in the OpenAI error shape (Starlette answers it in plain text).

Which preflights pass, and which headers every answer carries, is Starlette's decision, unchanged:
only the body of a refusal differs. A browser does not show that body to the page, but a person
debugging with curl or the network tab reads it, and it names the fix.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from .errors import ApiError
from .served import FALLBACK_HEADER

#: what a page may call: the endpoints take GET and POST
METHODS = ("GET", "POST", "OPTIONS")
#: the headers a page may read from an answer
EXPOSED = ("X-Swarm-Agreement", "X-Swarm-Strategy", "X-Swarm-Votes", "X-Swarm-Winner", FALLBACK_HEADER)


class OpenAICors(CORSMiddleware):
    """:class:`CORSMiddleware` whose refused preflight is a JSON 400, with the same headers."""

    def preflight_response(self, request_headers: Headers) -> Response:
        answer = super().preflight_response(request_headers)
        if answer.status_code < 400:
            return answer
        refused = bytes(answer.body).decode("utf-8", "replace").removeprefix("Disallowed CORS ")
        headers = {k: v for k, v in answer.headers.items() if k not in {"content-length", "content-type"}}
        return ApiError(
            answer.status_code,
            f"the CORS preflight was refused (not allowed: {refused}); the proxy allows the origins in "
            f"proxy.cors_origins (add this page's origin there) and the methods {', '.join(METHODS)}",
            code="cors_preflight_refused",
            headers=headers,
        ).response()


def cors_middleware(origins: tuple[str, ...]) -> Middleware:
    return Middleware(
        OpenAICors,
        allow_origins=list(origins),
        allow_methods=list(METHODS),
        allow_headers=["*"],
        expose_headers=list(EXPOSED),
    )
