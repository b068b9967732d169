"""Durations as Valohai writes them: integer seconds or strings such as ``"1h 30m 5s"``."""

from __future__ import annotations

import json
import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART_RE = re.compile(r"(?P<value>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>[a-z]*)")
_SEPARATOR_RE = re.compile(r"[\s,]*")
#: Longer durations (about 68 years) are refused as mistakes.
MAX_SECONDS = 2**31 - 1


def parse_duration(value: object) -> int:
    """Parse a duration into whole seconds; ``ValueError`` says why not (after the field name).

    Like Valohai, only the first letter of a unit counts (``m``, ``min`` and ``minutes`` are
    all minutes; ``s``, ``h``, ``d`` and ``w`` likewise) and a number without a unit is seconds.
    The total must be positive.
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError('must be an integer number of seconds or a string such as "1h 30m"')
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must not be negative")
        if value > MAX_SECONDS:
            raise ValueError(f"must be at most {MAX_SECONDS} seconds")
        return value
    text = value.strip().lower()
    total = 0.0
    position = 0
    matched = False
    while position < len(text):
        gap = _SEPARATOR_RE.match(text, position)
        position = gap.end() if gap else position
        if position >= len(text):
            break
        match = _PART_RE.match(text, position)
        if match is None:
            raise ValueError(f'{json.dumps(value)} is not a duration such as "1h 30m"')
        unit = match.group("unit")
        if unit and unit[0] not in _UNITS:
            raise ValueError(
                f"{json.dumps(value)} has an unknown unit {json.dumps(unit)} (use s, m, h, d or w)"
            )
        total += float(match.group("value")) * _UNITS[unit[0] if unit else "s"]
        matched = True
        position = match.end()
    if not matched or total <= 0:
        raise ValueError(f"{json.dumps(value)} is not a positive duration")
    if total > MAX_SECONDS:
        raise ValueError(f"must be at most {MAX_SECONDS} seconds")
    return round(total)


__all__ = ["parse_duration"]
