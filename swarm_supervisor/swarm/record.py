"""The run record: what a swarm's run file holds, as typed values. Its JSON is read and written here only.

The supervisor writes one (:func:`~.status.build_record`), ``swarm up`` writes the first one
before the supervisor runs (:func:`~.launcher.initial_record`), and ``ps``, ``down``, ``logs``,
``opencode`` and ``swarm up`` read it back through :meth:`~.runfile.RunFile.read`::

    rec = RunRecord.from_json(json.loads(text))   # ValueError: not a swarm's run file
    rec.supervisor.pid, rec.status, [i.port for i in rec.instances]
    json.dumps(rec.to_json())

Reading is lenient, as it has to be for a file written by another version or edited by hand: a
field that is missing or of the wrong type reads as its default (None, 0, empty), unknown keys
are ignored, and an instance entry that is not an object is skipped. Only a file that is not a
JSON object with a ``supervisor`` object is refused (:class:`ValueError`; the run file calls it
damaged and never deletes it).

A new field: add it to the dataclass with a default, and to :meth:`to_json` / :meth:`from_json`
(the tests round-trip every field).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: the record's layout; bumped when a field changes meaning (added fields do not bump it)
VERSION = 1


def _int(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _float(v: object) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _str(v: object) -> str | None:
    return v if isinstance(v, str) else None


def _obj(v: object) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _strs(v: object) -> tuple[str, ...]:
    return tuple(s for s in v if isinstance(s, str)) if isinstance(v, list) else ()


def _str_map(v: object) -> dict[str, str] | None:
    return {str(k): s for k, s in v.items() if isinstance(s, str)} if isinstance(v, dict) else None


@dataclass(frozen=True)
class ProcessRef:
    """A process as recorded: its pid and the ``create_time`` psutil reported for it, so that a
    recycled pid is never taken for it (:func:`~.system.same_process`)."""

    pid: int | None = None
    create_time: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "create_time": self.create_time}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ProcessRef:
        return cls(pid=_int(d.get("pid")), create_time=_float(d.get("create_time")))


@dataclass(frozen=True)
class ProxyRecord:
    """Where the proxy listens, whether clients must send ``proxy.api_key`` (the key itself is
    never recorded), and the names it serves besides the model id (``swarm opencode`` checks
    ``--model-id`` against them). None: a record written before that was recorded."""

    host: str | None = None
    port: int | None = None
    requires_api_key: bool | None = None
    aliases: tuple[str, ...] = ()  # [proxy] aliases: more names requests may send as `model`
    accept_any_model: bool | None = None  # [proxy] accept_any_model

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"host": self.host, "port": self.port}
        if self.requires_api_key is not None:
            out["requires_api_key"] = self.requires_api_key
        out["aliases"] = list(self.aliases)
        if self.accept_any_model is not None:
            out["accept_any_model"] = self.accept_any_model
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ProxyRecord:
        keyed, any_model = d.get("requires_api_key"), d.get("accept_any_model")
        return cls(
            host=_str(d.get("host")),
            port=_int(d.get("port")),
            requires_api_key=keyed if isinstance(keyed, bool) else None,
            aliases=_strs(d.get("aliases")),
            accept_any_model=any_model if isinstance(any_model, bool) else None,
        )


@dataclass(frozen=True)
class InstanceRecord:
    """One instance: its process (each leads its own process group), state and counters."""

    id: str
    pid: int | None = None
    create_time: float | None = None
    port: int | None = None
    state: str = "stopped"  # an instance.State value
    reason: str | None = None
    restarts: int = 0
    gpu: str | None = None  # "0", "0,1"; None: CPU
    slots: int = 1
    voters: int = 1
    log: str | None = None
    started_at: float | None = None
    ready_at: float | None = None
    requests: int = 0  # as the proxy counted them
    errors: int = 0
    avg_latency_ms: float | None = None

    @property
    def process(self) -> ProcessRef:
        return ProcessRef(self.pid, self.create_time)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pid": self.pid,
            "pgid": self.pid,  # each instance leads its own process group
            "create_time": self.create_time,
            "port": self.port,
            "state": self.state,
            "reason": self.reason,
            "restarts": self.restarts,
            "gpu": self.gpu,
            "slots": self.slots,
            "voters": self.voters,
            "log": self.log,
            "started_at": self.started_at,
            "ready_at": self.ready_at,
            "requests": self.requests,
            "errors": self.errors,
            "avg_latency_ms": self.avg_latency_ms,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> InstanceRecord:
        return cls(
            id=str(d.get("id")),
            pid=_int(d.get("pid")),
            create_time=_float(d.get("create_time")),
            port=_int(d.get("port")),
            state=_str(d.get("state")) or "?",
            reason=_str(d.get("reason")),
            restarts=_int(d.get("restarts")) or 0,
            gpu=_str(d.get("gpu")),
            slots=_int(d.get("slots")) or 1,
            voters=_int(d.get("voters")) or 1,
            log=_str(d.get("log")),
            started_at=_float(d.get("started_at")),
            ready_at=_float(d.get("ready_at")),
            requests=_int(d.get("requests")) or 0,
            errors=_int(d.get("errors")) or 0,
            avg_latency_ms=_float(d.get("avg_latency_ms")),
        )


@dataclass(frozen=True)
class RunRecord:
    """A swarm's run file. ``status``: starting / up / degraded / failed / stopping / stopped."""

    name: str
    status: str
    supervisor: ProcessRef
    reason: str | None = None
    base_url: str | None = None  # the OpenAI base URL, ".../v1"; None until the proxy listens
    model: str | None = None  # the model id the proxy serves
    #: set when ``model`` is the embedded stand-in for the planned model: {"planned", "running",
    #: "why", "fix"} (docs/api.md)
    fallback: Mapping[str, str] | None = None
    model_path: str | None = None
    binary: str | None = None  # the llama-server the instances run (`swarm models` keeps it)
    device: str | None = None  # "cpu" / "gpu" / "apple"
    context: int | None = None  # tokens per slot
    voters: int | None = None
    ready_voters: int | None = None
    concurrency: int | None = None  # voted requests at once
    requests: int | None = None  # client requests the proxy sent on
    proxy: ProxyRecord = field(default_factory=ProxyRecord)
    internal_key: str | None = None  # the instances' key: never shown by `ps` or /swarm/status
    started_at: float | None = None
    stop_grace_s: float | None = None  # what `swarm down` waits, whatever the config says now
    log_dir: str | None = None
    instances: tuple[InstanceRecord, ...] = ()
    version: int = VERSION

    def to_json(self) -> dict[str, Any]:
        """The JSON object of the run file (also the base of ``swarm ps --json``)."""
        return {
            "version": self.version,
            "name": self.name,
            "status": self.status,
            "reason": self.reason,
            "base_url": self.base_url,
            "model": self.model,
            "fallback": None if self.fallback is None else dict(self.fallback),
            "model_path": self.model_path,
            "binary": self.binary,
            "device": self.device,
            "context": self.context,
            "voters": self.voters,
            "ready_voters": self.ready_voters,
            "concurrency": self.concurrency,
            "requests": self.requests,
            "supervisor": self.supervisor.to_json(),
            "supervisor_pid": self.supervisor.pid,  # the same pid, for scripts that read it flat
            "proxy": self.proxy.to_json(),
            "internal_key": self.internal_key,
            "started_at": self.started_at,
            "stop_grace_s": self.stop_grace_s,
            "log_dir": self.log_dir,
            "instances": [i.to_json() for i in self.instances],
        }

    @classmethod
    def from_json(cls, data: object, name: str = "default") -> RunRecord:
        """The record in ``data`` (parsed JSON); :class:`ValueError` if it is not a swarm's run file.
        ``name``: the swarm's name where the record has none (the run file's name)."""
        if not isinstance(data, dict) or not isinstance(data.get("supervisor"), dict):
            raise ValueError("is not a swarm's run file (no `supervisor` object)")
        instances = data.get("instances")
        return cls(
            version=_int(data.get("version")) or VERSION,
            name=_str(data.get("name")) or name,
            status=_str(data.get("status")) or "unknown",
            reason=_str(data.get("reason")),
            base_url=_str(data.get("base_url")),
            model=_str(data.get("model")),
            fallback=_str_map(data.get("fallback")),
            model_path=_str(data.get("model_path")),
            binary=_str(data.get("binary")),
            device=_str(data.get("device")),
            context=_int(data.get("context")),
            voters=_int(data.get("voters")),
            ready_voters=_int(data.get("ready_voters")),
            concurrency=_int(data.get("concurrency")),
            requests=_int(data.get("requests")),
            supervisor=ProcessRef.from_json(data["supervisor"]),
            proxy=ProxyRecord.from_json(_obj(data.get("proxy"))),
            internal_key=_str(data.get("internal_key")),
            started_at=_float(data.get("started_at")),
            stop_grace_s=_float(data.get("stop_grace_s")),
            log_dir=_str(data.get("log_dir")),
            instances=tuple(
                InstanceRecord.from_json(i)
                for i in (instances if isinstance(instances, list) else [])
                if isinstance(i, dict)
            ),
        )
