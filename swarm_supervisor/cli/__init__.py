"""``swarm``: the command line. A wiring file: each command lives in its own module, imported
when it runs (:data:`.app.COMMANDS`).

``main`` is the click group of :mod:`.app`, loaded on first use. Run as the program (the
``swarm`` script and ``python -m swarm_supervisor`` call ``main()``), ``swarm up`` first tries
its remembered launch (:mod:`.quick`), before click is even imported: a start from a record needs
none of it.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

__all__ = ["main"]


class _Program:
    """The ``swarm`` group as the program runs it; anything else is the group's own attribute
    (``CliRunner().invoke(main, [...])`` calls ``main.main(...)``)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not args and not kwargs and sys.argv[1:2] == ["up"]:
            from .quick import quick_up

            code = quick_up(sys.argv[1:])
            if code is not None:
                # all is said and the swarm runs in its own process group: the interpreter's
                # teardown (30-60 ms with rich loaded) would only delay the shell's prompt
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        from .app import main as group

        return group(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        from .app import main as group

        return getattr(group, name)


if TYPE_CHECKING:
    from .app import main as main
else:
    main = _Program()
