"""Errors a user can cause: shown as one line, exit code 2, no traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A mistake in what the user asked for (config, names, paths); not a bug.

    The CLI prints ``error: <message>`` and exits with code 2. Keep the message to one line
    naming the bad value and what would be valid.
    """

    exit_code = 2


class ConfigError(UserError):
    """A config key, type or value that is not valid."""


class RunFailed(UserError):
    """Training cannot go on (a non-finite loss, a failed checkpoint write); exit code 1."""

    exit_code = 1


class PluginError(UserError):
    """A plugin broke its contract or failed in a hook; one line naming it, exit code 1.

    Not the user's input but not ssl_core's bug either: the line names the plugin and the
    hook so the user knows whom to ask (``--debug`` shows the traceback).
    """

    exit_code = 1


class RunInterrupted(Exception):
    """The run stopped on SIGINT/SIGTERM after writing a checkpoint; exit code 128 + signal."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


def during_run(exc: UserError) -> UserError:
    """``exc`` met after the run started (its MLflow run created): exit code 1, not 2.

    Exit code 2 promises that nothing was started or written; a mistake found once the run is
    under way (an unreadable image with ``data.strict=true``) keeps its message and ends the
    run as failed.
    """
    if exc.exit_code != 2:
        return exc
    failed = RunFailed(str(exc))
    failed.__cause__ = exc
    return failed


def closest(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The candidates closest to ``word`` (for "did you mean" hints), best first."""
    return difflib.get_close_matches(word, list(candidates), n=n, cutoff=0.6)


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` when a candidate is close to ``word``, else ``""``."""
    best = closest(word, candidates, n=1)
    return f" (did you mean '{best[0]}'?)" if best else ""
