"""Download GGUF files from the Hugging Face hub into the models cache, resumably.

::

    got = fetch_from_hub("Qwen/Qwen2.5-Coder-7B-Instruct-GGUF", ["qwen2.5-coder-7b-instruct-q4_k_m.gguf"],
                         cache_dir=dirs().models / "hub", revision="main")
    got.paths[0]   # .../hub/Qwen--Qwen2.5-Coder-7B-Instruct-GGUF/snapshots/<commit>/qwen2.5-...gguf

huggingface_hub does the talking: ``hf_hub_url`` / ``get_hf_file_metadata`` (the HEAD request,
``X-Repo-Commit``, ``X-Linked-Etag``, ``X-Linked-Size``, redirects, ``HF_TOKEN``) and ``http_get``
(the GET with its tqdm progress bar, retries with a ``Range`` header when a transfer breaks, and
the size check). The store keeps the bytes itself, because huggingface_hub (2.x) deletes a partial
download when the call fails: here a partial file is kept as ``partial/<etag>.part`` and the next
call resumes it with a ``Range`` request, which matters for a 4 GiB file on a flaky link.

Layout under ``cache_dir``, one folder per repo::

    <org>--<name>/refs/<revision>              the commit the revision pointed at
    <org>--<name>/snapshots/<commit>/<file>    complete, verified files only
    <org>--<name>/partial/<etag>.part          an interrupted download (never used as a model)

A file reaches ``snapshots/`` only after its size matches the hub's and it reads back as a GGUF,
by an atomic rename. ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and ``HF_TOKEN`` are read at call time.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlsplit

from filelock import FileLock

from ..errors import FetchError, HubUnreachableError, ModelFileError
from .gguf_check import gguf_problem

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://huggingface.co"
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class HubFiles:
    """Files of one repo that exist locally, complete and checked."""

    repo: str
    revision: str
    commit: str
    paths: tuple[Path, ...]  # in the order asked for; the first is what llama-server gets
    source: Literal["cache", "hub"]

    @property
    def bytes(self) -> int:
        return sum(p.stat().st_size for p in self.paths)


def hub_endpoint(env: dict[str, str] | None = None) -> str:
    env = dict(os.environ) if env is None else env
    return (env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def hub_offline(env: dict[str, str] | None = None) -> bool:
    env = dict(os.environ) if env is None else env
    return env.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def unreachable_message(reason: str, embedded: Sequence[str]) -> str:
    """The one line a user sees when the hub cannot be reached."""
    names = ", ".join(embedded) if embedded else "none"
    return f"the Hugging Face hub cannot be reached ({reason}); embedded models that would run here: {names}"


def repo_folder(cache_dir: Path, repo: str) -> Path:
    return cache_dir / repo.replace("/", "--")


def _safe_rel(filename: str) -> Path:
    rel = Path(filename)
    if rel.is_absolute() or ".." in rel.parts or not filename:
        raise FetchError(f"refusing the repo file name {filename!r} (absolute or with `..`)")
    return rel


def _ref_file(folder: Path, revision: str) -> Path:
    return folder / "refs" / quote(revision, safe="")


def _cached_commit(folder: Path, revision: str) -> str | None:
    if _COMMIT.match(revision):
        return revision
    try:
        commit = _ref_file(folder, revision).read_text().strip()
    except OSError:
        return None
    return commit if _COMMIT.match(commit) else None


def cache_markers(cache_dir: Path, repo: str, files: Sequence[str], revision: str = "main") -> list[Path]:
    """What a download of ``revision`` writes first-hand into the cache: the ref file of a branch or
    tag (rewritten by every completed download), or the snapshot's files of a pinned commit. A
    change of any of them (size, modification time) says the cache changed for that revision."""
    folder = repo_folder(cache_dir, repo)
    if _COMMIT.match(revision):
        return [folder / "snapshots" / revision / _safe_rel(f) for f in files]
    return [_ref_file(folder, revision)]


def cached_files(cache_dir: Path, repo: str, files: Sequence[str], revision: str = "main") -> HubFiles | None:
    """The files if a complete copy of ``revision`` is in the cache, without touching the network."""
    folder = repo_folder(cache_dir, repo)
    commit = _cached_commit(folder, revision)
    if commit is None:
        return None
    paths = tuple(folder / "snapshots" / commit / _safe_rel(f) for f in files)
    if all(p.is_file() for p in paths):
        return HubFiles(repo=repo, revision=revision, commit=commit, paths=paths, source="cache")
    return None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _hub_error(exc: Exception, repo: str, filename: str, embedded: Sequence[str]) -> FetchError:
    """Turn what huggingface_hub raised for the HEAD request into one of ours."""
    import httpx2
    from huggingface_hub import errors as hf

    if isinstance(exc, hf.OfflineModeIsEnabled):
        return HubUnreachableError(unreachable_message("HF_HUB_OFFLINE is set", embedded))
    if isinstance(exc, (httpx2.TransportError, hf.FileMetadataError)):
        return HubUnreachableError(unreachable_message(_describe(exc), embedded))
    if isinstance(exc, hf.GatedRepoError):
        return FetchError(
            f"{repo} is gated: accept its terms on the hub and set HF_TOKEN to a token that may read it"
        )
    if isinstance(exc, hf.RepositoryNotFoundError):
        return FetchError(f"{repo} was not found on the hub (private? set HF_TOKEN); check models.toml")
    if isinstance(exc, hf.RevisionNotFoundError):
        return FetchError(f"{repo} has no such revision; check `revision` in models.toml")
    if isinstance(exc, hf.RemoteEntryNotFoundError):
        return FetchError(f"{repo} has no file {filename!r}; check `files` in models.toml")
    if isinstance(exc, hf.HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else 0
        if status >= 500 or status in (408, 429):
            return HubUnreachableError(unreachable_message(f"it answered HTTP {status}", embedded))
        if status in (401, 403):
            return FetchError(f"the hub refused {repo}/{filename} (HTTP {status}): set HF_TOKEN")
        if status == 404:
            return FetchError(f"{repo}/{filename} was not found on the hub; check models.toml")
        return FetchError(f"the hub answered HTTP {status} for {repo}/{filename}")
    if isinstance(exc, hf.HFValidationError):
        return FetchError(
            f"{repo!r} / {filename!r} is not a valid hub repo or file name ({exc}); fix models.toml"
        )
    raise exc


def fetch_from_hub(
    repo: str,
    files: Sequence[str],
    *,
    cache_dir: Path,
    revision: str | None = None,
    endpoint: str | None = None,
    offline: bool | None = None,
    token: str | None = None,
    embedded: Sequence[str] = (),
) -> HubFiles:
    """Make every file of ``files`` present under ``cache_dir``: from the cache, else from the hub.

    ``embedded`` names the models that would run without the hub, for the unreachable message.
    Raises :class:`HubUnreachableError` (no route, offline, 5xx: the caller may fall back),
    :class:`FetchError` (not found, refused, wrong size) or :class:`ModelFileError` (not a GGUF).
    """
    revision = revision or "main"
    endpoint = (endpoint or hub_endpoint()).rstrip("/")
    offline = hub_offline() if offline is None else offline
    cached = cached_files(cache_dir, repo, files, revision)
    if cached is not None and (offline or _COMMIT.match(revision)):
        return cached  # a commit never changes; offline, the cache is all there is
    if offline:
        raise HubUnreachableError(
            unreachable_message(f"HF_HUB_OFFLINE is set and {repo} is not cached", embedded)
        )
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    folder = repo_folder(cache_dir, repo)
    paths: list[Path] = []
    commit = ""
    downloaded = False
    for filename in files:
        rel = _safe_rel(filename)
        try:
            url = hf_hub_url(repo, filename, revision=revision, endpoint=endpoint)
            meta = get_hf_file_metadata(url, token=token, endpoint=endpoint)
        except Exception as exc:
            err = _hub_error(exc, repo, filename, embedded)
            if cached is not None and isinstance(err, HubUnreachableError):
                log.warning("the hub cannot be reached (%s); using the cached %s", _describe(exc), repo)
                return cached
            raise err from None
        if not meta.commit_hash or not meta.etag:
            raise HubUnreachableError(
                unreachable_message(f"{endpoint} does not answer like a Hugging Face hub", embedded)
            )
        commit = meta.commit_hash
        if not _COMMIT.match(commit):  # it becomes a folder name: never let the server pick a path
            raise HubUnreachableError(
                unreachable_message(f"{endpoint} answered a malformed commit hash {commit[:60]!r}", embedded)
            )
        final = folder / "snapshots" / commit / rel
        if not final.is_file():
            _download(meta.location, url, final, folder, meta.etag, meta.size, token, filename, embedded)
            downloaded = True
        paths.append(final)
    _write_ref(folder, revision, commit)
    return HubFiles(
        repo=repo,
        revision=revision,
        commit=commit,
        paths=tuple(paths),
        source="hub" if downloaded else "cache",
    )


def _write_ref(folder: Path, revision: str, commit: str) -> None:
    if revision == commit:
        return
    ref = _ref_file(folder, revision)
    ref.parent.mkdir(parents=True, exist_ok=True)
    tmp = ref.with_name(f"{ref.name}.{os.getpid()}.tmp")
    tmp.write_text(commit)
    tmp.replace(ref)


def _download(
    location: str,
    url: str,
    final: Path,
    folder: Path,
    etag: str,
    size: int | None,
    token: str | None,
    filename: str,
    embedded: Sequence[str],
) -> None:
    """GET ``location`` into ``partial/<etag>.part`` (resuming it), check it, rename it to ``final``."""
    import httpx2
    from huggingface_hub import errors as hf
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils._headers import build_hf_headers

    partial_dir = folder / "partial"
    partial_dir.mkdir(parents=True, exist_ok=True)
    part = partial_dir / (re.sub(r"[^A-Za-z0-9._-]", "_", etag) + ".part")
    headers = build_hf_headers(token=token)
    if urlsplit(location).netloc != urlsplit(url).netloc:
        headers.pop("authorization", None)  # a CDN's signed URL: the token stays with the hub
    with FileLock(str(part) + ".lock"):
        if final.is_file():  # another process finished it while this one waited
            return
        with part.open("ab") as fh:
            resume = fh.tell()
            if size is not None and resume > size:
                fh.truncate(0)
                resume = 0
            if resume:
                log.info("resuming %s at %d of %s bytes", filename, resume, size)
            try:
                http_get(
                    location,
                    fh,
                    resume_size=resume,
                    headers=headers,
                    expected_size=size,
                    displayed_filename=Path(filename).name,
                )
            except hf.HfHubHTTPError as exc:
                status = exc.response.status_code if exc.response is not None else 0
                if status == 416:  # our partial is longer than the file now: start over next time
                    part.unlink(missing_ok=True)
                err = _hub_error(exc, folder.name, filename, embedded)
                raise type(err)(f"{err} (download of {filename} stopped; run `swarm pull` again)") from None
            except httpx2.TransportError as exc:
                got = part.stat().st_size
                raise HubUnreachableError(
                    f"the download of {filename} stopped at {got} of {size} bytes ({_describe(exc)}); "
                    "the part is kept: run `swarm pull` again to resume"
                ) from None
            except OSError as exc:
                part.unlink(missing_ok=True)
                if exc.errno is not None:
                    raise FetchError(f"cannot write {part}: {exc.strerror}") from None
                raise FetchError(
                    f"the hub sent the wrong number of bytes for {filename} ({_describe(exc)}); "
                    "nothing was kept: run `swarm pull` again"
                ) from None
        got = part.stat().st_size
        if size is not None and got != size:
            part.unlink(missing_ok=True)
            raise FetchError(
                f"{filename}: {got} bytes arrived, the hub announced {size}; nothing was kept: "
                "run `swarm pull` again"
            )
        problem = gguf_problem(part)
        if problem is not None:
            part.unlink(missing_ok=True)
            raise ModelFileError(
                f"{filename} from {folder.name} is not a valid GGUF ({problem}); it was deleted: "
                "check `files` in models.toml, then run `swarm pull` again"
            )
        final.parent.mkdir(parents=True, exist_ok=True)
        part.replace(final)
    Path(str(part) + ".lock").unlink(missing_ok=True)


def embedded_names(entries: Iterable[tuple[str, bool]]) -> list[str]:
    """``[(model_id, chat)]`` -> display names, chat models first, base models marked."""
    items = list(entries)
    chat = [m for m, c in items if c]
    base = [f"{m} (base model, not for chat)" for m, c in items if not c]
    return chat + base
