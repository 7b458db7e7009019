"""The errors bin_fetch raises (its own tree: this package never imports swarm_supervisor).

    FetchBinaryError              no runnable llama-server could be found or made
    ├── BinaryNotRunnableError    a binary exists but ``--version`` does not run
    ├── ReleaseError              the release asset could not be fetched, checked or unpacked
    └── BuildError                the source build failed (the message names the build log)

Each message says what happened and what to do next. The CLI shows ``str(err)``.
"""

from __future__ import annotations


class FetchBinaryError(Exception):
    """No runnable llama-server could be found, downloaded or built."""


class BinaryNotRunnableError(FetchBinaryError):
    """A candidate binary did not run ``--version`` successfully."""


class ReleaseError(FetchBinaryError):
    """The official release asset could not be fetched, verified or unpacked."""


class BuildError(FetchBinaryError):
    """The source build of llama-server failed."""
