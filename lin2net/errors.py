"""Errors that reach the user as one line, never as a traceback."""

from __future__ import annotations


class Lin2netError(Exception):
    """Base class: the message is complete and fit to show a user as is."""

    exit_code = 1


class ConfigError(Lin2netError):
    """A config key or value is invalid; ``key`` is its dotted path, e.g. ``grid.eta``."""

    exit_code = 2

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}" if key else problem)


class OutputError(Lin2netError):
    """The output directory cannot be used as asked (exists, unwritable, foreign)."""

    exit_code = 2
