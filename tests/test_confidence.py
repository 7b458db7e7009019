"""The voters' confidence: reading llama-server's log-probabilities, and the measures over them."""

from __future__ import annotations

import math

import pytest

from swarm_supervisor.consensus import Candidate
from swarm_supervisor.consensus.certainty import certainty, mean_logprob, self_certainty
from swarm_supervisor.proxy.confidence import logprob_fields, stream_entries


def entry(lp: float, *alts: float) -> dict[str, object]:
    return {
        "token": "t",
        "logprob": lp,
        "bytes": [116],
        "top_logprobs": [{"token": f"a{i}", "logprob": a, "bytes": []} for i, a in enumerate(alts)],
    }


def test_fields_from_a_llama_server_choice() -> None:
    # the shape llama-server's chat endpoint returns with logprobs: true, top_logprobs: 3
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": "ab"},
        "logprobs": {"content": [entry(-0.1, -0.1, -2.5, -4.0), entry(-1.2, -0.4, -1.2, -3.0)]},
    }
    f = logprob_fields(choice)
    assert f["token_logprobs"] == (-0.1, -1.2)
    assert f["top_logprobs"] == ((-0.1, -2.5, -4.0), (-0.4, -1.2, -3.0))
    c = Candidate("v", "ab", **f)
    assert c.token_logprobs == (-0.1, -1.2)


def test_no_logprobs_gives_no_fields() -> None:
    assert logprob_fields({"message": {"content": "x"}}) == {}
    assert logprob_fields({"logprobs": None}) == {}
    assert logprob_fields({"logprobs": {"content": []}}) == {}
    # only the sampled token's log-probability (top_logprobs missing): no top rows
    assert logprob_fields({"logprobs": {"content": [{"token": "x", "logprob": -0.3}]}}) == {
        "token_logprobs": (-0.3,)
    }


def test_malformed_entries_are_skipped_not_guessed() -> None:
    content = [None, {"token": "x"}, {"logprob": "bad"}, {"logprob": True}, entry(-0.5, -0.5, "x", None)]  # type: ignore[arg-type]
    assert logprob_fields({"logprobs": {"content": content}}) == {
        "token_logprobs": (-0.5,),
        "top_logprobs": ((-0.5,),),
    }


def test_streamed_chunks_carry_their_entries() -> None:
    chunks = [
        {"delta": {"content": "a"}, "logprobs": {"content": [entry(-0.2)]}},
        {"delta": {}},
        {"logprobs": None},
    ]
    merged = [e for c in chunks for e in stream_entries(c)]
    assert logprob_fields({"logprobs": {"content": merged}})["token_logprobs"] == (-0.2,)


def test_mean_logprob_prefers_the_surer_answer() -> None:
    sure = Candidate("a", "x", token_logprobs=(-0.01, -0.02, -0.03))
    unsure = Candidate("b", "x", token_logprobs=(-0.01, -2.0, -0.03))
    assert mean_logprob(sure) == pytest.approx(-0.02)
    assert (mean_logprob(sure) or 0) > (mean_logprob(unsure) or 0)
    assert mean_logprob(Candidate("c", "x")) is None


def test_self_certainty_is_zero_for_a_flat_distribution_and_log_k_for_a_certain_one() -> None:
    flat = Candidate("a", "x", top_logprobs=((math.log(0.25),) * 4,))
    assert self_certainty(flat) == pytest.approx(0.0, abs=1e-9)
    peaked = Candidate("b", "x", top_logprobs=((0.0, -60.0, -60.0, -60.0),))
    assert self_certainty(peaked) == pytest.approx(-math.log(4) + 60 * 3 / 4, rel=1e-6)
    mid = Candidate("c", "x", top_logprobs=((-0.1, -2.5, -4.0, -5.0), (-0.7, -0.8, -3.0, -3.5)))
    assert 0 < (self_certainty(mid) or 0) < (self_certainty(peaked) or 0)
    # a position with one alternative says nothing; none at all: no measure
    assert self_certainty(Candidate("d", "x", top_logprobs=((-0.1,),))) is None
    assert self_certainty(Candidate("e", "x")) is None


def test_certainty_names_the_measure() -> None:
    c = Candidate("a", "x", token_logprobs=(-0.5,), top_logprobs=((-0.5, -1.0),))
    assert certainty(c, "mean_logprob") == -0.5
    assert certainty(c, "self_certainty") == self_certainty(c)
    with pytest.raises(ValueError, match="mean_logprob or self_certainty"):
        certainty(c, "entropy")  # type: ignore[arg-type]
