"""Checks of config values shared by every parser: each returns the value in its
Python type or raises :class:`~lin2net.errors.ConfigError` naming the key, with
the offending value rendered by :func:`describe` (bounded in length and time)."""

from __future__ import annotations

import difflib
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lin2net.errors import ConfigError


def describe(value: Any) -> str:
    """A short rendering of ``value`` for messages, in time bounded by its first
    few elements (a nested or aliased value is never rendered in full)."""
    text = bounded_repr(value, 60)
    if len(text) > 60:
        text = text[:57] + "..."
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return text if is_number else f"{text} ({type(value).__name__})"


def bounded_repr(value: Any, budget: int) -> str:
    """repr(value), stopping once about ``budget`` characters are produced."""
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        if value.bit_length() > 160:
            return f"{'-' if value < 0 else ''}an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits"
        return repr(value)
    if isinstance(value, str):
        return repr(value[: budget + 1])
    if isinstance(value, Mapping):
        pairs, opened, closed = list(itertools.islice(value.items(), 8)), "{", "}"
    elif isinstance(value, (list, tuple)):
        pairs, opened, closed = [(None, item) for item in itertools.islice(value, 8)], "[", "]"
    else:
        return clip(repr(value), budget)
    parts: list[str] = []
    used = 0
    for key, item in pairs:
        if used > budget:
            break
        room = budget - used
        part = bounded_repr(item, room)
        if opened == "{":
            part = f"{bounded_repr(key, room)}: {part}"
        parts.append(part)
        used += len(part) + 2
    more = ", ..." if len(value) > len(parts) else ""
    return opened + ", ".join(parts) + more + closed


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def finite_float(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(key, f"must be a number, got {describe(value)}")
    try:
        result = float(value)
    except OverflowError:  # an integer beyond the float range
        result = math.inf
    if not math.isfinite(result):
        raise ConfigError(key, f"must be a finite number, got {describe(value)}")
    return result


def positive_float(key: str, value: Any) -> float:
    result = finite_float(key, value)
    if result <= 0:
        raise ConfigError(key, f"must be > 0, got {value!r}")
    return result


def integer(key: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer() and math.isfinite(value):
            value = int(value)
        else:
            raise ConfigError(key, f"must be an integer, got {describe(value)}")
    if value < minimum:
        raise ConfigError(key, f"must be {'>= 0' if minimum == 0 else '> 0'}, got {describe(value)}")
    if maximum is not None and value > maximum:
        raise ConfigError(key, f"must be at most {maximum}, got {describe(value)}")
    return int(value)


def positive_int(key: str, value: Any, maximum: int | None = None) -> int:
    return integer(key, value, minimum=1, maximum=maximum)


def reject_unknown(
    mapping: Mapping[Any, Any],
    allowed: Sequence[str],
    prefix: str,
    hint: Callable[[str], str | None] | None = None,
) -> None:
    """ConfigError naming ``prefix + key`` for the first key of ``mapping`` not in
    ``allowed``, with the closest allowed key as a suggestion (or ``hint(key)``
    where that says more) and the list of valid keys."""
    for key in mapping:
        if key not in allowed:
            specific = hint(str(key)) if hint is not None else None
            shown = specific if specific is not None else suggest(str(key), allowed)
            raise ConfigError(f"{prefix}{key}", f"unknown key{shown}; valid keys: {', '.join(allowed)}")


def suggest(word: str, choices: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the choice closest to ``word``, or nothing if none is close."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""
