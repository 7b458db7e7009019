"""The opencode provider config of a running swarm, and merging it into a project's opencode.json.

    ep = endpoint(RunFile("default"), requires_key_default=False)  # raises if none is running
    config = provider_config(ep)                 # {"$schema", "provider": {"swarm": ...}, "model"}
    merged = merge_into(Path("opencode.json"), config)   # atomic; other keys and providers kept

The provider is ``swarm`` (npm ``@ai-sdk/openai-compatible``); its one model is the swarm's
model with ``limit.context`` = the context of one slot and ``limit.output`` = a quarter of it.
opencode sends ``limit.output`` as ``max_tokens`` and keeps ``context - output`` for the prompt
(its agent prompt alone is 2.2k-3k tokens), so a quarter leaves room for the prompt and history.

An existing file that is not strict JSON (opencode also reads JSONC: comments, trailing commas)
is refused and left untouched: rewriting it would silently drop the user's comments.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, SwarmStateError
from .paths import replace_file
from .plan.shape import MIN_USEFUL_CONTEXT
from .swarm.record import RunRecord
from .swarm.runfile import RunFile, is_stale

SCHEMA = "https://opencode.ai/config.json"
PROVIDER_ID = "swarm"
NPM_PACKAGE = "@ai-sdk/openai-compatible"
API_KEY_ENV = "SWARM_API_KEY"
#: limit.output = context per slot // OUTPUT_SHARE, at most MAX_OUTPUT (opencode's own output cap)
OUTPUT_SHARE = 4
MAX_OUTPUT = 32_000
_WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}


@dataclass(frozen=True)
class Endpoint:
    """What opencode needs to know about one running swarm."""

    name: str  # the swarm's name (`swarm up --name`)
    base_url: str  # the OpenAI base URL, ending in /v1
    model_id: str  # the model the swarm serves, e.g. "smollm2:135m:q4_1"
    context: int  # tokens of context per slot (per voter)
    voters: int
    requires_api_key: bool
    aliases: tuple[str, ...] = ()  # more names the proxy serves the model under
    #: whether the proxy answers any model name; None: a run file from before this was recorded
    accept_any_model: bool | None = None

    @property
    def output(self) -> int:
        return output_limit(self.context)


def output_limit(context: int) -> int:
    """``limit.output`` for ``context`` tokens per slot: a quarter, at most :data:`MAX_OUTPUT`."""
    return max(1, min(context // OUTPUT_SHARE, MAX_OUTPUT))


def v1_url(base_url: str) -> str:
    """``base_url`` ending in ``/v1`` exactly once, with a wildcard listen address made loopback."""
    url = base_url.rstrip("/")
    scheme, sep, rest = url.partition("://")
    if sep:
        hostport, slash, path = rest.partition("/")
        host, colon, port = hostport.rpartition(":")
        if colon and host in _WILDCARD_HOSTS:
            url = f"{scheme}://{_WILDCARD_HOSTS[host]}:{port}{slash}{path}"
    return url if url.endswith("/v1") else url + "/v1"


def endpoint_from_record(rec: RunRecord, *, requires_key_default: bool) -> Endpoint:
    """The endpoint a run file describes. ``requires_key_default`` is used for run files written
    before ``proxy.requires_api_key`` was recorded (from the config ``swarm`` reads now)."""
    name = rec.name
    base_url, context = rec.base_url, rec.context
    if rec.status != "up" or base_url is None or context is None:
        how = "" if name == "default" else f" --name {name}"
        raise SwarmStateError(
            f"swarm {name!r} is not serving yet (status: {rec.status}); "
            f"wait for `swarm up{how}` to return, or see `swarm ps{how}`"
        )
    keyed = rec.proxy.requires_api_key
    return Endpoint(
        name=name,
        base_url=v1_url(base_url),
        model_id=rec.model or "swarm",
        context=context,
        voters=rec.voters or 0,
        requires_api_key=requires_key_default if keyed is None else keyed,
        aliases=rec.proxy.aliases,
        accept_any_model=rec.proxy.accept_any_model,
    )


def endpoint(rf: RunFile, *, requires_key_default: bool) -> Endpoint:
    """The endpoint of the running swarm ``rf.name``; :class:`SwarmStateError` if none runs."""
    with rf.lock():
        rec = rf.read()
    how = "" if rf.name == "default" else f" --name {rf.name}"
    if rec is None:
        raise SwarmStateError(f"no swarm named {rf.name!r} is running; start one with `swarm up{how}` first")
    if is_stale(rec):
        raise SwarmStateError(
            f"swarm {rf.name!r} is not running (its supervisor and instances are gone); "
            f"start it with `swarm up{how}` first"
        )
    return endpoint_from_record(rec, requires_key_default=requires_key_default)


def check_served(ep: Endpoint, model_id: str) -> None:
    """:class:`ConfigError` when the proxy would answer ``model_id`` with 404 model_not_found."""
    if ep.accept_any_model is None or ep.accept_any_model or model_id in (ep.model_id, *ep.aliases):
        return
    names = ", ".join(repr(n) for n in (ep.model_id, *ep.aliases))
    how = "" if ep.name == "default" else f" --name {ep.name}"
    raise ConfigError(
        f"--model-id {model_id!r}: swarm {ep.name!r} does not serve that name (it serves {names}), so "
        f"opencode's requests would get 404 model_not_found; add it to `aliases` in the config's [proxy] "
        f"table and restart the swarm (`swarm down{how}`, `swarm up{how}`), or leave out --model-id"
    )


def provider_config(ep: Endpoint, model_id: str | None = None) -> dict[str, Any]:
    """The opencode config (``$schema``, ``provider.swarm``, ``model``) for ``ep``; ``model_id``
    must be a name the swarm serves (:func:`check_served`)."""
    mid = model_id or ep.model_id
    check_served(ep, mid)
    options: dict[str, Any] = {"baseURL": ep.base_url}
    if ep.requires_api_key:
        options["apiKey"] = "{env:" + API_KEY_ENV + "}"
    options["includeUsage"] = True  # the usage chunk feeds opencode's context meter
    title = "Local Swarm" if ep.name == "default" else f"Local Swarm ({ep.name})"
    voters = f", {ep.voters} voters" if ep.voters else ""
    return {
        "$schema": SCHEMA,
        "provider": {
            PROVIDER_ID: {
                "npm": NPM_PACKAGE,
                "name": title,
                "options": options,
                "models": {
                    mid: {
                        "name": f"{ep.model_id} ({title}{voters})",
                        "limit": {"context": ep.context, "output": ep.output},
                    }
                },
            }
        },
        "model": f"{PROVIDER_ID}/{mid}",
    }


def warnings_for(ep: Endpoint) -> list[str]:
    out = []
    if ep.context < MIN_USEFUL_CONTEXT:
        how = "" if ep.name == "default" else f" --name {ep.name}"
        out.append(
            f"the swarm has {ep.context} tokens of context per slot; opencode's agent prompt alone "
            f"needs about 3k: restart it with `swarm up{how} --context 8192` (or more)"
        )
    if ep.requires_api_key and not os.environ.get(API_KEY_ENV):
        out.append(f"the proxy wants its API key: set {API_KEY_ENV} to proxy.api_key where opencode runs")
    return out


# --------------------------------------------------------------------------- merging


@dataclass
class Merged:
    """What :func:`merge` did, for the message ``swarm opencode --write`` prints."""

    data: dict[str, Any]
    created: bool = False
    replaced_provider: bool = False
    previous_model: str | None = None
    kept_providers: list[str] = field(default_factory=list)
    kept_keys: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def load_existing(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when there is no file (an empty file counts as ``{}``).

    Anything that is not a JSON object is a :class:`ConfigError` naming the file; the file is
    never touched."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    keep = "left it untouched"
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text; {keep}") from None
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); {keep}. "
            "A file with comments or trailing commas (JSONC) is not rewritten, since that would drop "
            "them: run `swarm opencode` and paste provider.swarm and model in yourself, "
            "or write another file with --path"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} holds a JSON {type(data).__name__}, not an object; {keep}")
    if not isinstance(data.get("provider", {}), dict):
        raise ConfigError(f"{path}: `provider` is not an object; {keep}")
    return data


def merge(existing: dict[str, Any] | None, config: dict[str, Any]) -> Merged:
    """``existing`` with ``provider.swarm`` and ``model`` from ``config``; every other key kept."""
    if existing is None:
        return Merged(data=dict(config), created=True)
    data = dict(existing)
    providers = dict(data.get("provider") or {})
    ours = config["provider"][PROVIDER_ID]
    result = Merged(data=data, replaced_provider=PROVIDER_ID in providers)
    result.kept_providers = [p for p in providers if p != PROVIDER_ID]
    providers[PROVIDER_ID] = ours
    data["provider"] = providers
    old_model = data.get("model")
    if old_model != config["model"] and old_model is not None:
        result.previous_model = str(old_model)
    data["model"] = config["model"]
    result.kept_keys = [k for k in data if k not in ("provider", "model")]
    enabled = data.get("enabled_providers")
    if isinstance(enabled, list) and PROVIDER_ID not in enabled:
        result.warnings.append(f"`enabled_providers` does not list {PROVIDER_ID!r}: opencode will ignore it")
    disabled = data.get("disabled_providers")
    if isinstance(disabled, list) and PROVIDER_ID in disabled:
        result.warnings.append(f"`disabled_providers` lists {PROVIDER_ID!r}: opencode will ignore it")
    return result


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step (tmp file + os.replace); keeps the file's mode.

    A symlink is followed: its target is replaced, the link stays."""
    target = path.resolve() if path.is_symlink() else path
    try:
        mode: int | None = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = None
    if mode is None:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    replace_file(target, text, mode)


def merge_into(path: Path, config: dict[str, Any]) -> Merged:
    """Merge ``config`` into the opencode config file ``path`` (created if missing)."""
    result = merge(load_existing(path), config)
    if not path.parent.is_dir():
        raise ConfigError(f"cannot write {path}: {path.parent} is not a directory")
    write_atomic(path, json.dumps(result.data, indent=2, ensure_ascii=False) + "\n")
    sibling = path.with_suffix(".jsonc" if path.suffix == ".json" else ".json")
    if path.stem == "opencode" and sibling.exists():
        result.warnings.append(f"{sibling.name} is beside it: opencode reads both and merges them")
    return result


def describe(path: Path, result: Merged, model: str) -> list[str]:
    """The lines ``swarm opencode --write`` prints."""
    if result.created:
        return [f"Wrote {path}: provider {PROVIDER_ID!r} and model = {model}."]
    what = "Replaced" if result.replaced_provider else "Added"
    was = f" (was {result.previous_model})" if result.previous_model else ""
    lines = [f"{what} provider {PROVIDER_ID!r} and set model = {model}{was} in {path}."]
    kept = [f"providers {', '.join(result.kept_providers)}"] if result.kept_providers else []
    if result.kept_keys:
        kept.append(f"keys {', '.join(result.kept_keys)}")
    lines.append(f"Kept the rest as it was: {'; '.join(kept)}." if kept else "Nothing else was in the file.")
    return lines
