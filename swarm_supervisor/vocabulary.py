"""The words the stages share, each defined once: config, hardware, processes, proxy and
consensus import them from here. Plain ``Literal`` types (no I/O, no dependencies), so a light
command such as ``swarm ps`` can import them without pydantic::

    from swarm_supervisor.vocabulary import STRATEGIES, Strategy

    strategy: Strategy = "quality"      # mypy refuses "qualty"
    STRATEGIES                          # ("similarity", "quality", "fastest"), for a CLI choice

``Backend`` here is the *server program* an instance runs; ``bin_fetch.Backend`` (cpu, cuda,
metal, vulkan, rocm) is the compute backend a llama-server build was made for, a different thing
that lives in the leaf package ``bin_fetch``.
"""

from __future__ import annotations

from typing import Literal, get_args

#: how the proxy picks the answer (docs/voting.md): ``consensus.vote`` implements each
Strategy = Literal["similarity", "quality", "fastest"]
STRATEGIES: tuple[Strategy, ...] = get_args(Strategy)

#: the OpenAI endpoint a request came to (``/v1/chat/completions`` or ``/v1/completions``): the
#: proxy's word; ``consensus.Kind`` is a different one, the kind of an answer (text, tool_calls, none)
Endpoint = Literal["chat", "completion"]

#: how a streamed request is answered: vote then stream the winner, or relay the first stream
StreamMode = Literal["consensus", "fastest"]

#: the server program an instance runs: llama.cpp's ``llama-server`` or ``mlx_lm.server``
Backend = Literal["llama.cpp", "mlx"]

#: who made a GPU (``hardware`` detects it; an instance is pinned to it by that vendor's variable)
GpuVendor = Literal["nvidia", "amd", "apple"]
