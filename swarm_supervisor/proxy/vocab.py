"""Token ids in ``logit_bias`` that the model does not have.

llama-server skips a bias whose token id is not below its vocabulary size without a word
(``"999999": -100`` changes nothing), so a client that meant to ban a token gets an answer that
looks fine. The proxy learns the size once from an instance's ``/v1/models`` (llama-server's
``meta.n_vocab``) and answers such an id with a 400 that names it. Where no instance says (an
older llama-server, another server), nothing is checked::

    size = await vocab_size(client, pool, upstreams)       # 49152 for SmolLM2, or None
    check_vocab(token_ids(body.get("logit_bias")), size)   # ApiError(400) or None
"""

from __future__ import annotations

import json

from .client import UpstreamClient
from .errors import ApiError
from .upstreams import Upstream, UpstreamPool

#: seconds to wait for an instance's /v1/models (a ready llama-server answers at once)
MODELS_TIMEOUT_S = 2.0


def _n_vocab(text: str | None) -> int | None:
    try:
        data = json.loads(text or "")["data"][0]["meta"]["n_vocab"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return data if isinstance(data, int) and not isinstance(data, bool) and data > 0 else None


async def vocab_size(client: UpstreamClient, pool: UpstreamPool, upstreams: list[Upstream]) -> int | None:
    """The model's vocabulary size, asked of the instances once and kept. An instance that
    answers without it is taken at its word: not asked again on every request."""
    if pool.vocab is None and not pool.vocab_unreported:
        for u in upstreams:
            text = await client.get_text(u.url + "/v1/models", MODELS_TIMEOUT_S)
            if text is not None:  # it answered: its word stands, with the size or without
                pool.vocab = _n_vocab(text)
                pool.vocab_unreported = pool.vocab is None
                break
    return pool.vocab


def check_vocab(ids: list[int], n_vocab: int | None) -> None:
    """A 400 for the first of ``logit_bias``'s token ``ids`` at or above ``n_vocab`` (None: not
    known)."""
    if n_vocab is None:
        return
    for token in ids:
        if token >= n_vocab:
            raise ApiError(
                400,
                f"logit_bias: the token id {token} is not in the model's vocabulary (ids 0 to "
                f"{n_vocab - 1}); llama-server would skip it without a word",
                param="logit_bias",
                code="invalid_value",
            )
