"""The supervisor process's entry: spawn the instances first, then load the rest.

    python -P -m swarm_supervisor.swarm.boot NAME      # started by `swarm up` (launcher.py)
    python -P -m swarm_supervisor.swarm.boot --wait    # prestarted: the name comes on stdin (prestart.py)

Until the instances are spawned this process holds only what spawning needs: the launch spec
read as plain JSON (:func:`~.spec.first_to_start`), the argv, the process group, the log. No
pydantic, no asyncio, no proxy: those (:mod:`.daemon`, about 0.8 s of CPU in all) are imported
after the spawn, while the models load, and the supervisor then takes over the spawned
processes (:meth:`~.supervisor.Supervisor.spawn_ahead`). On a GPU only the first instance of
each GPU starts here; the others follow one by one once it is ready, as always.

An instance that cannot be spawned here is left to the supervisor, which tries it again and
reports the failure in the run file as it does for any start.
"""

from __future__ import annotations

import gc
import logging
import os
import sys

from ..errors import ProcessError
from .instance import Instance
from .prestart import WAIT_FLAG
from .runfile import RunFile
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
    rf = RunFile(name)
    fd = os.open(rf.log_dir / "supervisor.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    for std in (1, 2):
        os.dup2(fd, std)
    os.close(fd)
    os.chdir(rf.log_dir)
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


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == [WAIT_FLAG]:
        name = wait_for_name()
        if name is None:
            return 0
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
    rf = RunFile(args[0])
    try:
        text = rf.launch_path.read_text(encoding="utf-8")
        first = first_to_start(text)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.error("cannot read the launch spec %s: %s", rf.launch_path, exc)
        return 2
    spawned = spawn_first(first)
    # the heavy part, while the models load: the cyclic garbage collector is held off until the
    # swarm is up (daemon.serve), it only slows imports down (about a tenth of their CPU time)
    gc.disable()
    from .daemon import serve

    return serve(rf, text, spawned)


if __name__ == "__main__":
    sys.exit(main())
