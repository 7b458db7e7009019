"""Unpack a release archive (``.tar.gz`` or ``.zip``) whole, refusing anything that escapes its folder."""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from .errors import ReleaseError


def _check_name(name: str, archive: Path) -> PurePosixPath:
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or (pure.parts and pure.parts[0].endswith(":")):
        raise ReleaseError(
            f"{archive.name}: refusing to unpack: the entry {name!r} points outside its folder. "
            "The archive is not a genuine llama.cpp release; check release_base_url"
        )
    return pure


def _check_link(name: str, target: str, archive: Path) -> None:
    base = _check_name(name, archive).parent
    joined = PurePosixPath(os.path.normpath(str(base / target)))
    if PurePosixPath(target).is_absolute() or joined.parts[:1] == ("..",):
        raise ReleaseError(
            f"{archive.name}: refusing to unpack: the link {name!r} -> {target!r} points outside "
            "its folder. The archive is not a genuine llama.cpp release; check release_base_url"
        )


def _corrupt(archive: Path, exc: BaseException) -> ReleaseError:
    return ReleaseError(
        f"{archive.name} is damaged or truncated ({type(exc).__name__}: {exc}); nothing was installed. "
        "Retry `swarm pull`; if it happens again, pass `--build` to build llama-server from source"
    )


def _unpack_tar(archive: Path, dest: Path) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for m in members:
                _check_name(m.name, archive)
                if m.issym():
                    _check_link(m.name, m.linkname, archive)
                elif m.islnk():
                    _check_name(m.linkname, archive)
                elif not (m.isfile() or m.isdir()):
                    raise ReleaseError(
                        f"{archive.name}: refusing to unpack the special file {m.name!r}; "
                        "the archive is not a genuine llama.cpp release"
                    )
            tar.extractall(dest, members=members, filter="data")
    except ReleaseError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise _corrupt(archive, exc) from None


def _unpack_zip(archive: Path, dest: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:
                _check_name(info.filename, archive)
            for info in infos:
                rel = _check_name(info.filename, archive)
                target = dest.joinpath(*rel.parts)
                mode = info.external_attr >> 16
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                if stat.S_ISLNK(mode):
                    link = zf.read(info).decode("utf-8")
                    _check_link(info.filename, link, archive)
                    target.symlink_to(link)
                    continue
                with zf.open(info) as src, target.open("wb") as out:
                    shutil.copyfileobj(src, out)
                if mode & 0o111:
                    target.chmod((mode & 0o755) | 0o600)
    except ReleaseError:
        raise
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError, UnicodeDecodeError) as exc:
        raise _corrupt(archive, exc) from None


def unpack(archive: Path, dest: Path) -> None:
    """Unpack ``archive`` into the existing folder ``dest``; raise ReleaseError on damage or escapes."""
    if archive.name.endswith(".zip"):
        _unpack_zip(archive, dest)
    elif archive.name.endswith((".tar.gz", ".tgz", ".tar.xz", ".tar")):
        _unpack_tar(archive, dest)
    else:
        raise ReleaseError(f"{archive.name}: unknown archive type (expected .tar.gz or .zip)")


def find_executable(root: Path, name: str) -> Path | None:
    """The shallowest file called ``name`` (or ``name.exe``) under ``root``."""
    hits = [p for n in (name, f"{name}.exe") for p in root.rglob(n) if p.is_file()]
    if not hits:
        return None
    return min(hits, key=lambda p: (len(p.relative_to(root).parts), str(p)))
