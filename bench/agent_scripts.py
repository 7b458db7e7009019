"""The scripted sessions ``bench/agent_capture.py`` records: each a prompt for opencode, then one
list of tool calls per turn (read, grep, glob, bash, task) and a closing text. The recorded
bodies are what ``python -m bench agent`` replays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Call = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Script:
    """A session: ``prompt`` typed by the user, then per turn the tool calls the model makes; the
    turn after the last one answers ``final`` as text."""

    name: str
    description: str
    prompt: str
    turns: list[list[Call]]
    final: str = "Done."
    subagent: bool = False  # this script is a subagent's, started by a ``task`` call


def _read(path: str, offset: int | None = None, limit: int | None = None) -> Call:
    args: dict[str, Any] = {"filePath": path}
    if offset is not None:
        args["offset"] = offset
    if limit is not None:
        args["limit"] = limit
    return ("read", args)


def _grep(pattern: str, include: str | None = None) -> Call:
    return ("grep", {"pattern": pattern, **({"include": include} if include else {})})


def _glob(pattern: str) -> Call:
    return ("glob", {"pattern": pattern})


SUB_PROMPT = (
    "Find every place in swarm_supervisor/ where the proxy cancels a voter's request once the vote "
    "has its quorum, and report the function names and files. Do not change anything."
)


SCRIPTS: list[Script] = [
    Script(
        "explain-vote",
        "user asks how the vote works; the agent globs, greps and reads the consensus package",
        "How does the swarm pick the winning answer among the voters? Point me to the code.",
        [
            [_glob("swarm_supervisor/consensus/*.py")],
            [_grep("def vote", "*.py")],
            [_read("swarm_supervisor/consensus/__init__.py")],
            [_read("swarm_supervisor/consensus/cluster.py")],
            [_read("swarm_supervisor/consensus/vote.py")],
            [_read("swarm_supervisor/consensus/types.py")],
        ],
        "The winner is the medoid of the largest cluster of similar answers (consensus/cluster.py).",
    ),
    Script(
        "fix-runfile",
        "user reports a bug; the agent greps, reads the run file module and its test, edits a line",
        "swarm ps sometimes shows a swarm that is gone. Find where the run file is judged stale.",
        [
            [_grep("is_stale")],
            [_read("swarm_supervisor/swarm/runfile.py")],
            [_read("tests/test_runfile.py")],
            [
                (
                    "edit",
                    {
                        "filePath": "swarm_supervisor/swarm/runfile.py",
                        "oldString": "def is_stale(",
                        "newString": "def is_stale(  # judged by the supervisor's pid and start time\n",
                    },
                )
            ],
        ],
        "is_stale checks the supervisor's pid and create_time; I noted that at its definition.",
    ),
    Script(
        "subagent-parent",
        "user asks for a review; the agent delegates a search to a subagent (task tool), then reads",
        "Review how cancellation works in the proxy. Use a subagent to find the code first.",
        [
            [
                (
                    "task",
                    {
                        "description": "Find cancellation code",
                        "prompt": SUB_PROMPT,
                        "subagent_type": "general",
                    },
                )
            ],
            [_read("swarm_supervisor/proxy/fanout.py")],
            [_read("swarm_supervisor/proxy/voting.py"), _read("swarm_supervisor/proxy/collect.py")],
        ],
        "Cancellation happens once the vote has a quorum: the remaining voters are closed.",
    ),
    Script(
        "subagent-task",
        "the subagent a `task` call starts (its own system prompt and tools): greps, globs, reads",
        SUB_PROMPT,
        [
            [_grep("cancel", "*.py")],
            [_glob("swarm_supervisor/proxy/*.py")],
            [_read("swarm_supervisor/proxy/fanout.py")],
            [_read("swarm_supervisor/proxy/relay.py")],
        ],
        "fanout.py cancels the remaining voters once a quorum agrees; relay.py closes streams.",
        subagent=True,
    ),
    Script(
        "plan-memory",
        "user asks about the plan's memory sum; the agent reads the plan package",
        "Explain how the plan decides how many instances fit in memory.",
        [
            [_glob("swarm_supervisor/plan/*.py")],
            [_read("swarm_supervisor/plan/memory.py")],
            [_grep("MIN_USEFUL_CONTEXT")],
            [_read("swarm_supervisor/plan/select.py", limit=200)],
            [_read("swarm_supervisor/plan/layout.py", limit=90)],
        ],
        "The plan sums weights, KV cache and overhead per instance; see plan/memory.py.",
    ),
    Script(
        "long-proxy-review",
        "a long review of the whole proxy package, reading file after file (to about 30k tokens)",
        "Do a thorough review of the proxy package: read every module and list the risky spots.",
        [
            [_glob("swarm_supervisor/proxy/*.py")],
            [_read("swarm_supervisor/proxy/app.py")],
            [_read("swarm_supervisor/proxy/handlers.py")],
            [_grep("async def", "*.py")],
            [_read("swarm_supervisor/proxy/fanout.py")],
            [_read("swarm_supervisor/proxy/relay.py"), _read("swarm_supervisor/proxy/sse.py")],
            [_read("swarm_supervisor/proxy/client.py")],
            [_read("swarm_supervisor/proxy/collect.py")],
            [_read("swarm_supervisor/proxy/metrics.py")],
            [_read("swarm_supervisor/proxy/upstreams.py"), _read("swarm_supervisor/proxy/voting.py")],
            [_read("swarm_supervisor/proxy/errors.py")],
            [_read("swarm_supervisor/proxy/server.py")],
            [_read("swarm_supervisor/proxy/settings.py")],
        ],
        "Risky spots: cancellation in fanout.py, stream relay errors in relay.py.",
    ),
    Script(
        "long-supervisor",
        "a long debugging session over the supervisor, processes and run file (to about 30k tokens)",
        "Instances sometimes restart in a loop after a crash. Investigate the supervisor and process code.",
        [
            [("bash", {"command": "git log --oneline -5", "description": "Show recent commits"})],
            [_grep("crash", "*.py")],
            [_read("swarm_supervisor/swarm/supervisor.py")],
            [_read("swarm_supervisor/swarm/instance.py")],
            [_read("swarm_supervisor/swarm/health.py")],
            [_read("swarm_supervisor/swarm/launcher.py")],
            [_read("swarm_supervisor/swarm/spec.py"), _read("swarm_supervisor/swarm/daemon.py")],
            [_read("swarm_supervisor/swarm/runfile.py")],
            [_read("tests/test_supervisor.py")],
            [_grep("backoff")],
            [_read("tests/test_process.py", limit=150)],
        ],
        "The restart backoff lives in supervisor.py; the crash-loop limit is what stops it.",
    ),
]
