"""What the proxy needs from the config, as one frozen value.

>>> from swarm_supervisor.config import ProxyConfig
>>> s = ProxySettings.from_config(ProxyConfig(strategy="quality"), voters=3)
>>> (s.strategy, s.stream_mode, s.threshold)
('quality', 'consensus', 0.85)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..vocabulary import Strategy, StreamMode
from .sampling import VOTER_TEMPERATURE

if TYPE_CHECKING:  # the supervisor reaches all-ready without pydantic (swarm/spec.py, ConfigView)
    from ..config import ProxyConfig


@dataclass(frozen=True)
class ProxySettings:
    """How the proxy answers: vote strategy, stream mode, limits and access."""

    strategy: Strategy = "quality"
    #: None: "consensus" while 2 or more voters are ready, else "fastest" (a plain relay)
    stream_mode: StreamMode | None = None
    threshold: float = 0.85  # similarity above which two answers count as the same
    request_timeout_s: float = 600.0  # deadline of one client request, fan-out included
    max_body_bytes: int = 16 * 1024 * 1024
    api_key: str | None = None  # the proxy's own key (clients send it as Bearer); None: open
    cors_origins: tuple[str, ...] = ()
    #: vote as soon as enough answers agree and cancel the stragglers; False: wait for every voter
    quorum: bool = True
    keepalive_s: float = 5.0  # SSE comment keep-alives while a streamed vote is pending
    metrics_timeout_s: float = 2.0  # how long /metrics waits for each instance's own /metrics
    retry_after_s: int = 5  # Retry-After of a 503 when no instance is ready
    # limits on what clients may ask (docs/limits.md; the config's [proxy] keys of the same names)
    max_messages: int = 2048
    max_header_bytes: int = 64 * 1024
    max_connections: int = 1024
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    straggler_min_s: float = 10.0
    straggler_factor: float = 3.0
    #: more names the swarm's model answers to; ``accept_any_model``: any name (docs/api.md)
    aliases: tuple[str, ...] = ()
    accept_any_model: bool = False
    #: the voters' temperature when a request sends none; None: llama-server's own default
    voter_temperature: float | None = VOTER_TEMPERATURE
    #: a vote samples at most at ``voter_temperature``; False: a client's temperature stands
    cap_client_temperature: bool = True

    @classmethod
    def from_config(
        cls, cfg: ProxyConfig, *, voters: int | None = None, **overrides: object
    ) -> ProxySettings:
        """Settings from the ``[proxy]`` config table; ``overrides`` replace single fields."""
        mode = cfg.stream_mode
        if mode is None and voters is not None:
            mode = "consensus" if voters >= 2 else "fastest"
        base = cls(
            strategy=cfg.strategy,
            stream_mode=mode,
            threshold=cfg.similarity_threshold,
            request_timeout_s=cfg.request_timeout_s,
            max_body_bytes=cfg.max_body_bytes,
            api_key=cfg.api_key or None,
            cors_origins=tuple(cfg.cors_origins),
            max_messages=cfg.max_messages,
            max_header_bytes=cfg.max_header_bytes,
            max_connections=cfg.max_connections,
            header_timeout_s=cfg.header_timeout_s,
            body_timeout_s=cfg.body_timeout_s,
            straggler_min_s=cfg.straggler_min_s,
            straggler_factor=cfg.straggler_factor,
            aliases=tuple(cfg.aliases),
            accept_any_model=cfg.accept_any_model,
            voter_temperature=None if isinstance(cfg.voter_temperature, str) else cfg.voter_temperature,
            cap_client_temperature=cfg.client_temperature == "cap",
        )
        if not overrides:
            return base
        from dataclasses import replace

        return replace(base, **overrides)  # type: ignore[arg-type]

    def stream_mode_for(self, voters: int) -> StreamMode:
        """The stream mode in effect with ``voters`` ready voters."""
        if self.stream_mode is not None:
            return self.stream_mode
        return "consensus" if voters >= 2 else "fastest"
