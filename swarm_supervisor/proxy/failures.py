"""Why a voter gave no answer, as classes, and the client's error when none of them answered.

UpstreamFailure               no usable answer; ``str()`` is the voter's ``error`` in the swarm extension
├── UpstreamUnreachable       the connection failed or broke off (nothing listens, reset, ended early)
├── UpstreamHttpError         the instance answered an error: a status other than 200 (``status``,
│                             ``body``), or an error event inside its stream (``status`` None)
├── UpstreamBadStream         a stream event that is not JSON, too long to read, or no choices at all
├── UpstreamTimeout           the deadline (``proxy.request_timeout_s``) or the straggler cutoff passed
└── UpstreamCancelled         not needed: the vote was settled without it, or the client went away

The upstream client (``client.py``, ``collect.py``, ``relay.py``) raises the first three; the fan-out
gives the last two to the voters still out when it stops waiting. Callers match classes, never
messages. The metrics label a voter ``ok``, ``timeout`` (`UpstreamTimeout`), ``cancelled``
(`UpstreamCancelled`) or ``error`` (the rest).

When no voter answered, :func:`no_answer` turns what they raised into the client's error
(docs/api.md, Errors):

- all refused the swarm's internal key (401/403): 502 ``upstream_error`` / ``internal_key_rejected``
- all sent the same 4xx with an OpenAI error body: that status and body, passed through
- all sent llama-server's 500 for input it cannot take: 400 ``invalid_request_error`` /
  ``rejected_by_instances``
- the deadline passed: 504 ``timeout`` / ``upstream_timeout``
- anything else: 502 ``upstream_error`` / ``upstream_failed``
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from .errors import ApiError, UpstreamStatusError


class UpstreamFailure(Exception):
    """One upstream call (or one voter) that produced no usable answer."""


class UpstreamUnreachable(UpstreamFailure):
    """The connection failed or broke off before the answer was complete."""


class UpstreamHttpError(UpstreamFailure):
    """The instance answered an error: ``status`` (None for an error event inside a 200 stream)
    and its parsed ``body`` (None when it was not JSON)."""

    def __init__(self, message: str, *, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class UpstreamBadStream(UpstreamFailure):
    """The stream was not what llama-server sends: invalid JSON, an over-long event, no choices."""


class UpstreamTimeout(UpstreamFailure):
    """The voter had not answered when the deadline or the straggler cutoff passed."""


class UpstreamCancelled(UpstreamFailure):
    """The voter was not waited for: the vote was settled, or the client went away."""


#: how llama-server words a 500 that is about the request (its input parsing), not about itself;
#: ``Unknown reasoning format: X`` and ``Cannot use both json_schema and grammar`` included
_REJECTION = re.compile(
    r"^Failed to parse|not supported|^Invalid |^Unsupported |must be |^Unknown reasoning format"
    r"|^Cannot (use|specify) |does not support",
    re.IGNORECASE,
)


def no_answer(failures: Sequence[UpstreamFailure], *, timed_out: bool) -> ApiError:
    """The error for a fan-out in which no voter answered: ``failures`` are what the calls
    raised, ``timed_out`` whether the deadline passed with voters still out."""
    statuses = {f.status if isinstance(f, UpstreamHttpError) else None for f in failures}
    if failures and len(statuses) == 1:
        status = next(iter(statuses))
        first = failures[0]
        if status in (401, 403):  # the instances refuse the swarm's own key: never the client's fault
            return ApiError(
                502,
                "the instances refused the swarm's internal key (its key file changed since they "
                "started); restart the swarm: `swarm down`, then `swarm up`",
                type="upstream_error",
                code="internal_key_rejected",
            )
        if (
            status is not None
            and 400 <= status < 500
            and isinstance(first, UpstreamHttpError)
            and isinstance(first.body, dict)
        ):
            return UpstreamStatusError(status, first.body)
        rejected = _unanimous_rejection(failures) if status == 500 else None
        if rejected is not None:
            return ApiError(
                400, f"the instances rejected the request: {rejected}", code="rejected_by_instances"
            )
    if timed_out:
        return ApiError(
            504,
            "no instance answered before the deadline (proxy.request_timeout_s); "
            "ask for fewer tokens or raise the timeout",
            type="timeout",
            code="upstream_timeout",
        )
    detail = "; ".join(sorted({str(f) for f in failures})) or "no answer"
    return ApiError(
        502,
        f"every instance failed to answer ({detail}); `swarm logs` shows why",
        type="upstream_error",
        code="upstream_failed",
    )


def _unanimous_rejection(failures: Sequence[UpstreamFailure]) -> str | None:
    """llama-server answers 500 to some requests it cannot take (``Failed to parse messages: ...``,
    ``image input is not supported``). When every voter gave the same message of that sort, the
    request is at fault, not an instance: the message, else None (then it is a 502)."""
    messages = set()
    for f in failures:
        body = f.body if isinstance(f, UpstreamHttpError) else None
        err = body.get("error") if isinstance(body, dict) else None
        message = err.get("message") if isinstance(err, dict) else None
        if not isinstance(message, str) or not message:
            return None
        messages.add(message)
    if len(messages) != 1:
        return None
    message = messages.pop()
    return message if _REJECTION.search(message) else None
