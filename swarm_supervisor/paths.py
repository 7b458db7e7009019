"""Where Local Swarm keeps its config, cache and state.

``SWARM_HOME=/some/dir`` moves all three under one folder (``config/``, ``cache/``, ``state/``);
tests use it to isolate themselves. Otherwise the per-OS user dirs from platformdirs are used.
Directories are created with mode 0700: the state dir holds the swarm's internal API key.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP = "local-swarm"


@dataclass(frozen=True)
class Dirs:
    config: Path
    cache: Path
    state: Path

    @property
    def config_file(self) -> Path:
        return self.config / "config.toml"

    @property
    def models(self) -> Path:
        return self.cache / "models"

    @property
    def bin(self) -> Path:
        return self.cache / "bin"

    @property
    def runs(self) -> Path:
        return self.state / "runs"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    def launch_file(self, name: str) -> Path:
        """The spec ``swarm up`` hands the supervisor process of swarm ``name``."""
        return self.runs / f"{name}.launch.json"

    def log_dir(self, name: str) -> Path:
        """Swarm ``name``'s logs (its supervisor's and each instance's)."""
        return self.logs / name


def dirs(env: dict[str, str] | None = None) -> Dirs:
    """Resolve the dirs from ``SWARM_HOME`` or the platform defaults (nothing is created)."""
    env = dict(os.environ) if env is None else env
    home = env.get("SWARM_HOME")
    if home:
        root = Path(home).expanduser()
        return Dirs(config=root / "config", cache=root / "cache", state=root / "state")
    return Dirs(
        config=Path(platformdirs.user_config_dir(APP)),
        cache=Path(platformdirs.user_cache_dir(APP)),
        state=Path(platformdirs.user_state_dir(APP)),
    )


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) with mode 0700 and return it."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def replace_file(path: Path, text: str, mode: int, durable: bool = True) -> None:
    """Replace ``path`` with ``text`` in one step: a temporary file in the same folder, written
    with ``mode``, synced (unless not ``durable``), then renamed over it. A reader sees the old
    file or the new one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
