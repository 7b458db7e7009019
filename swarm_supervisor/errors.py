"""The errors Local Swarm raises, drawn once.

    SwarmError                     every error a user can see; the CLI prints ``str(err)`` and exits 1
    ├── ConfigError                a bad config file or models.toml entry (names the key)
    ├── PlanError                  nothing fits, or an override that cannot be honoured
    ├── FetchError                 weights could not be found or downloaded
    │   ├── HubUnreachableError    no route to the Hugging Face hub
    │   └── ModelFileError         a file that is not a valid GGUF (names the file)
    ├── ProcessError               a llama-server that would not start or stay up
    │   └── NotReadyError          readiness deadline passed
    └── SwarmStateError            run file trouble: a swarm already up, none running, a stale lock
        ├── NotRunningError        no swarm of that name runs (`swarm down` says so and exits 0)
        └── RunFileDamaged         a run file that is not what a supervisor writes (never deleted)

Each message says what happened and what to do next, in one or two sentences.
"""

from __future__ import annotations


class SwarmError(Exception):
    """Base of every error meant for the user. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class ConfigError(SwarmError):
    """A config file or catalogue entry is invalid."""

    exit_code = 2


class PlanError(SwarmError):
    """No plan satisfies the hardware, catalogue and overrides."""


class FetchError(SwarmError):
    """Model weights could not be found or fetched."""


class HubUnreachableError(FetchError):
    """The Hugging Face hub cannot be reached (offline, firewalled, HF_HUB_OFFLINE)."""


class ModelFileError(FetchError):
    """A model file is corrupt, truncated or not a GGUF."""


class ProcessError(SwarmError):
    """An instance failed to start or stay up."""


class NotReadyError(ProcessError):
    """An instance did not become ready before its deadline."""


class SwarmStateError(SwarmError):
    """The run file says something that forbids the command (already up, not running, ...)."""


class NotRunningError(SwarmStateError):
    """No swarm of that name is running: nothing to stop, nothing to show."""


class RunFileDamaged(SwarmStateError):
    """A run file that cannot be parsed: nothing is deleted, the message says how to recover."""
