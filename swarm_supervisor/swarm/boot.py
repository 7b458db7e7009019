"""The supervisor process's entry: spawn the instances first, then load the rest.

    python -P -m swarm_supervisor.swarm.boot NAME      # started by `swarm up` (launcher.py)
    python -P -m swarm_supervisor.swarm.boot --wait    # prestarted: the name comes on stdin (prestart.py)

Spawning needs only the launch spec read as plain JSON (:func:`~.spec.first_to_start`), the
argv, the process group and the log, and waits for nothing else. A prestarted process loads the
supervisor (:data:`PRELOAD`) in a thread while it waits for the name, on the core `swarm up`
leaves free; the proxy's listening part (starlette, uvicorn) is imported after the spawn, while
the models load, and the supervisor then takes over the spawned processes
(:meth:`~.supervisor.Supervisor.spawn_ahead`). On a GPU only the first instance of each GPU
starts here; the others follow one by one once it is ready, as always. Nothing here imports
pydantic before all-ready: the config is read from the spec as it was dumped
(:class:`~.spec.ConfigView`); the request path brings pydantic later (proxy/request_path.py).

An instance that cannot be spawned here is left to the supervisor, which tries it again and
reports the failure in the run file as it does for any start.
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import sys
import threading

from ..errors import ProcessError
from ..paths import dirs
from .instance import Instance
from .prestart import WAIT_FLAG
from .spec import InstanceConfig, first_to_start
from .system import free_port, raise_open_file_limit

log = logging.getLogger("swarm_supervisor.swarm.daemon")  # one logger name in supervisor.log


def wait_for_name() -> str | None:
    """Prestarted (``--wait``, :mod:`.prestart`): the swarm's name from stdin, once ``swarm up`` has
    claimed the run file; then stdout/stderr go to its supervisor.log. None when ``swarm up``
    ended without handing over (the pipe closed)."""
    name = sys.stdin.readline().strip()
    if not name:
        return None
    log_dir = dirs().log_dir(name)
    fd = os.open(log_dir / "supervisor.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    for std in (1, 2):
        os.dup2(fd, std)
    os.close(fd)
    os.chdir(log_dir)
    return name


def spawn_first(cfgs: list[InstanceConfig]) -> dict[str, Instance]:
    """Spawn these instances (:func:`~.spec.first_to_start`); the ones that started, by id."""
    spawned: dict[str, Instance] = {}
    for cfg in cfgs:
        inst = Instance(cfg)
        try:
            inst.spawn(free_port())
        except (ProcessError, OSError) as exc:  # the supervisor tries again and reports it
            log.warning("instance %s: not spawned ahead: %s", cfg.id, exc)
            continue
        spawned[cfg.id] = inst
    return spawned


#: what the supervisor imports after the spawn but the proxy: a prestarted process loads them
#: while it waits for the name (on the other core than `swarm up`'s own work); the proxy's modules
#: come only after the spawn, as ever (tests/test_daemon_start.py)
PRELOAD = ("swarm_supervisor.swarm.daemon", "uvloop")


def _preload() -> None:
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:  # the same import after the spawn says what is wrong
            return


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    # the cyclic garbage collector is held off until the swarm is up (daemon.serve): it only slows
    # the imports down (about a tenth of their CPU time)
    gc.disable()
    loading: threading.Thread | None = None
    if args == [WAIT_FLAG]:
        loading = threading.Thread(target=_preload, name="preload", daemon=True)
        loading.start()  # the name is read meanwhile; spawning waits for nothing it loads
        name = wait_for_name()
        if name is None:
            os._exit(0)  # `swarm up` ended without handing over: nothing to tidy, no import to finish
        args = [name]
    if len(args) != 1:
        print("usage: python -m swarm_supervisor.swarm.boot NAME|--wait", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    log.info("open-file limit: %d", raise_open_file_limit())  # before the spawn: they inherit it
    launch = dirs().launch_file(args[0])
    try:
        text = launch.read_text(encoding="utf-8")
        first = first_to_start(text)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.error("cannot read the launch spec %s: %s", launch, exc)
        return 2
    spawned = spawn_first(first)
    if loading is not None:
        loading.join()
    from .daemon import serve  # the rest, the proxy's modules too, while the models load
    from .runfile import RunFile

    return serve(RunFile(args[0]), text, spawned)


if __name__ == "__main__":
    sys.exit(main())
