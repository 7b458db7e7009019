"""Find or get a runnable ``llama-server`` (or ``mlx_lm.server``). A leaf: never imports swarm_supervisor.

::

    from bin_fetch import Request, find_or_fetch
    from bin_fetch.progress import make_progress

    binary = find_or_fetch(Request(cache_dir=dirs().bin), make_progress())
    binary.path, binary.version, binary.backend, binary.source

Resolution order: explicit path, PATH, cache, official release asset, source build
(:mod:`bin_fetch.resolve`). Every binary is trusted only after ``--version`` runs.
"""

from .errors import BinaryNotRunnableError, BuildError, FetchBinaryError, ReleaseError
from .progress import Progress, make_progress
from .resolve import (
    choose_backend,
    describe_known_binary,
    find_cached,
    find_mlx_server,
    find_or_fetch,
    find_tool,
)
from .values import (
    DEFAULT_RELEASE_BASE_URL,
    DEFAULT_RELEASE_TAG,
    DEFAULT_SDIST_VERSION,
    Backend,
    Binary,
    Request,
    Source,
)
from .verify import verify

__all__ = [
    "DEFAULT_RELEASE_BASE_URL",
    "DEFAULT_RELEASE_TAG",
    "DEFAULT_SDIST_VERSION",
    "Backend",
    "Binary",
    "BinaryNotRunnableError",
    "BuildError",
    "FetchBinaryError",
    "Progress",
    "ReleaseError",
    "Request",
    "Source",
    "choose_backend",
    "describe_known_binary",
    "find_cached",
    "find_mlx_server",
    "find_or_fetch",
    "find_tool",
    "make_progress",
    "verify",
]
