"""Step 4: the official llama.cpp release asset for this OS, arch and backend.

``GET {release_base_url}/releases/tags/{tag}`` lists the assets (name, size,
``browser_download_url``, ``digest: "sha256:..."``). The matching archive (plus, for Windows CUDA,
its ``cudart`` archive) is streamed into a staging folder, checked against the listed size and
digest, unpacked whole (the backend libraries stay beside the binary), run with ``--version`` and
only then renamed into the cache.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from . import cache
from .archive import find_executable, unpack
from .errors import BinaryNotRunnableError, ReleaseError
from .progress import NullProgress, Progress
from .values import Backend, Binary, Request
from .verify import verify

log = logging.getLogger(__name__)

_CHUNK = 1 << 16


@dataclass(frozen=True)
class Asset:
    name: str
    size: int
    url: str
    digest: str | None  # "sha256:<hex>" where the release lists one


def _platform_patterns(os_name: str, arch: str, backend: Backend) -> list[str]:
    """Regexes (over the part after ``llama-<tag>-bin-``) in order of preference; [] = no asset."""
    if os_name == "linux":
        table: dict[Backend, list[str]] = {
            "cpu": [f"ubuntu-{arch}"],
            "vulkan": [f"ubuntu-vulkan-{arch}"],
            "rocm": [rf"ubuntu-rocm-7\.2-{arch}", rf"ubuntu-rocm-[0-9.]+-{arch}"],
            # no dependable Linux CUDA asset (the CUDA runtime must match): build from source
        }
        return table.get(backend, [])
    if os_name == "darwin":
        return [f"macos-{arch}"] if backend in ("metal", "cpu") else []
    if os_name == "windows":
        table = {
            "cpu": [f"win-cpu-{arch}"],
            "cuda": [rf"win-cuda-12\.4-{arch}", rf"win-cuda-[0-9.]+-{arch}"],
            "vulkan": [f"win-vulkan-{arch}"],
            "rocm": [f"win-hip-radeon-{arch}"],
        }
        return table.get(backend, [])
    return []


def has_release_asset(os_name: str, arch: str, backend: Backend) -> bool:
    """Whether llama.cpp publishes a binary for this platform at all (else: build from source)."""
    return bool(_platform_patterns(os_name, arch, backend))


def pick_assets(assets: list[Asset], tag: str, os_name: str, arch: str, backend: Backend) -> list[Asset]:
    """The archive for this platform, then its companions (Windows CUDA: the cudart archive).

    ``.tar.gz`` is preferred over ``.zip`` (older tags published macOS and Linux as ``.zip``).
    Returns [] when the release has no matching asset.
    """
    by_name = {a.name: a for a in assets}
    for pattern in _platform_patterns(os_name, arch, backend):
        rx = re.compile(rf"llama-{re.escape(tag)}-bin-({pattern})\.(tar\.gz|zip)")
        hits = sorted(
            (a for a in assets if rx.fullmatch(a.name)),
            key=lambda a: (0 if a.name.endswith(".tar.gz") else 1, a.name),
        )
        if not hits:
            continue
        main = hits[0]
        chosen = [main]
        m = re.search(r"win-cuda-([0-9.]+)-", main.name)
        if m:
            cudart = by_name.get(f"cudart-llama-bin-win-cuda-{m.group(1)}-{arch}.zip")
            if cudart is None:
                raise ReleaseError(
                    f"release {tag} has {main.name} but not its CUDA runtime archive "
                    f"cudart-llama-bin-win-cuda-{m.group(1)}-{arch}.zip; pick another binary.release_tag"
                )
            chosen.append(cudart)
        return chosen
    return []


def _parse_assets(data: Any, url: str) -> list[Asset]:
    if not isinstance(data, dict) or not isinstance(data.get("assets"), list):
        raise ReleaseError(
            f"{url} did not answer with a GitHub release (no 'assets' list); check release_base_url"
        )
    out: list[Asset] = []
    for raw in data["assets"]:
        if not isinstance(raw, dict):
            continue
        name, size, link = raw.get("name"), raw.get("size"), raw.get("browser_download_url")
        digest = raw.get("digest")
        if isinstance(name, str) and isinstance(size, int) and isinstance(link, str):
            out.append(Asset(name, size, link, digest if isinstance(digest, str) else None))
    return out


def _client(req: Request) -> httpx.Client:
    return httpx.Client(
        timeout=httpx.Timeout(req.http_timeout_s, connect=min(10.0, req.http_timeout_s)),
        follow_redirects=True,
        headers={"User-Agent": "local-swarm-bin-fetch", "Accept": "application/vnd.github+json"},
    )


def _unreachable(url: str, exc: Exception) -> ReleaseError:
    return ReleaseError(
        f"cannot reach {url} ({type(exc).__name__}: {exc}); check the network, or set "
        "binary.release_base_url, or build from source with `swarm pull --build`"
    )


def fetch_release(client: httpx.Client, req: Request) -> list[Asset]:
    url = f"{req.release_base_url.rstrip('/')}/releases/tags/{req.release_tag}"
    log.info("release: asking %s", url)
    try:
        resp = client.get(url)
    except httpx.HTTPError as exc:
        raise _unreachable(url, exc) from None
    if resp.status_code == 404:
        raise ReleaseError(
            f"llama.cpp release {req.release_tag!r} not found at {url} (404); set binary.release_tag "
            "to an existing tag (see https://github.com/ggml-org/llama.cpp/releases)"
        )
    if resp.status_code in (403, 429):
        raise ReleaseError(
            f"{url} refused the request ({resp.status_code}, probably GitHub's rate limit); "
            "retry later or build from source with `swarm pull --build`"
        )
    if resp.status_code != 200:
        raise ReleaseError(f"{url} answered {resp.status_code}; retry later or use `swarm pull --build`")
    try:
        data = resp.json()
    except ValueError:
        raise ReleaseError(f"{url} did not answer JSON; check binary.release_base_url") from None
    return _parse_assets(data, url)


def download(client: httpx.Client, asset: Asset, dest: Path, progress: Progress) -> Path:
    """Stream ``asset`` to ``dest/<name>``, checking size and sha256 digest as it lands."""
    target = dest / asset.name
    sha = hashlib.sha256()
    got = 0
    log.info("release: downloading %s (%d bytes)", asset.url, asset.size)
    progress.start(f"downloading {asset.name}", asset.size, "bytes")
    try:
        with client.stream("GET", asset.url) as resp:
            if resp.status_code != 200:
                raise ReleaseError(
                    f"downloading {asset.name} failed: {asset.url} answered {resp.status_code}; "
                    "retry later or build from source with `swarm pull --build`"
                )
            with target.open("wb") as out:
                for chunk in resp.iter_bytes(_CHUNK):
                    out.write(chunk)
                    sha.update(chunk)
                    got += len(chunk)
                    if got > asset.size:
                        break
                    progress.update(got)
    except httpx.HTTPError as exc:
        raise ReleaseError(
            f"downloading {asset.name} was cut off after {got} of {asset.size} bytes "
            f"({type(exc).__name__}); nothing was installed. Retry `swarm pull`"
        ) from None
    finally:
        progress.stop()
    if got != asset.size:
        raise ReleaseError(
            f"{asset.name}: got {got} bytes but the release lists {asset.size}; the download is "
            "incomplete or altered and was discarded. Retry `swarm pull`"
        )
    if asset.digest is None:
        log.warning("release: %s lists no digest; only its size was checked", asset.name)
    else:
        algo, _, want = asset.digest.partition(":")
        if algo.lower() != "sha256":
            log.warning("release: %s has a %s digest, which is not checked; size was", asset.name, algo)
        elif sha.hexdigest() != want.lower():
            raise ReleaseError(
                f"{asset.name}: sha256 {sha.hexdigest()} does not match the release's {want}; "
                "the download was discarded. Retry `swarm pull`; if it persists, do not trust the source"
            )
    return target


def install_release(req: Request, backend: Backend, progress: Progress | None = None) -> Binary:
    """Download, check, unpack, verify and cache the release binary. Call while holding the lock.

    Raises :class:`ReleaseError` (or ``BinaryNotRunnableError``); the cache is unchanged then.
    """
    progress = progress or NullProgress()
    if not has_release_asset(req.os, req.arch, backend):
        raise ReleaseError(f"llama.cpp publishes no {backend} binary for {req.os}-{req.arch}")
    with _client(req) as client:
        assets = pick_assets(fetch_release(client, req), req.release_tag, req.os, req.arch, backend)
        if not assets:
            raise ReleaseError(
                f"release {req.release_tag} has no {backend} asset for {req.os}-{req.arch}; "
                "build from source with `swarm pull --build` or pick another binary.release_tag"
            )
        with cache.staging(req.cache_dir) as downloads, cache.staging(req.cache_dir) as stage:
            archives = [download(client, a, downloads, progress) for a in assets]
            for archive in archives:
                log.info("release: unpacking %s", archive.name)
                unpack(archive, stage)
            binary = find_executable(stage, "llama-server")
            if binary is None:
                raise ReleaseError(
                    f"{assets[0].name} holds no llama-server executable; pick another binary.release_tag "
                    "or build from source with `swarm pull --build`"
                )
            binary.chmod(binary.stat().st_mode | 0o111)
            try:
                version = verify(binary)
            except BinaryNotRunnableError as exc:
                raise ReleaseError(f"the release binary does not run on this machine: {exc}") from None
            tools = sorted(p.name for p in binary.parent.iterdir() if p.name.startswith("llama-"))
            entry = cache.commit(
                stage,
                cache.entry_name("release", req.release_tag, backend),
                {
                    "origin": "release",
                    "key": req.release_tag,
                    "binary": binary.relative_to(stage).as_posix(),
                    "version": version,
                    "backend": backend,
                    "os": req.os,
                    "arch": req.arch,
                    "assets": [
                        {"name": a.name, "size": a.size, "digest": a.digest, "url": a.url} for a in assets
                    ],
                    "tools": tools,
                },
            )
    log.info("release: installed %s (%s)", entry.binary, version)
    progress.note(f"llama-server {version} ({backend}, release {req.release_tag}) -> {entry.binary}")
    return Binary(path=entry.binary, version=version, backend=backend, source="release")
