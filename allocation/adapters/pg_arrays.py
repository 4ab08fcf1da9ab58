"""Array parameters sent as one array literal each, not as psycopg2's ``ARRAY[...]``.

psycopg2 renders a list element by element, an adapter object and a quoting call per
value: a consumer's poll of 500 commands sends some twenty arrays of 500, and rendering
them was an eighth of the consumer's time. Every array parameter of the service's
statements goes through an explicit ``CAST(:x AS type[])`` (or a declared ``text[]``), so
it can as well arrive as one string in PostgreSQL's array syntax, ``{1,2}`` or
``{"a","b"}``, which psycopg2 quotes in one call and the server reads with the type's own
input function: the same values, built in about half the time.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

_UNQUOTED = (int, float, Decimal, UUID)  # their text has no character the syntax reserves
_QUOTED = (str, datetime, date)


def literal(values: list[Any]) -> str | list[Any]:
    """``values`` in PostgreSQL's array syntax; the list itself if it holds anything else
    (psycopg2 then renders it as before)."""
    kinds = set(map(type, values))
    if kinds == {str}:
        return _texts(values)
    if kinds == {int}:
        return "{" + ",".join(map(str, values)) + "}"
    return _mixed(values)


def _texts(values: list[str]) -> str | list[Any]:
    # Joined, escaped and split again in C: a NUL cannot be in a PostgreSQL string, so it
    # marks the boundaries (unless a value holds one, which the server refuses anyway).
    joined = "\0".join(values)
    if joined.count("\0") != len(values) - 1:
        return _mixed(values)
    if "\\" in joined:
        joined = joined.replace("\\", "\\\\")
    if '"' in joined:
        joined = joined.replace('"', '\\"')
    return '{"' + joined.replace("\0", '","') + '"}'


def _mixed(values: list[Any]) -> str | list[Any]:
    parts = []
    for value in values:
        if value is None:
            parts.append("NULL")
        elif isinstance(value, bool):
            parts.append("t" if value else "f")
        elif isinstance(value, _UNQUOTED):
            parts.append(str(value))
        elif isinstance(value, _QUOTED):
            text = str(value)
            if "\\" in text or '"' in text:
                text = text.replace("\\", "\\\\").replace('"', '\\"')
            parts.append(f'"{text}"')
        else:
            return values
    return "{" + ",".join(parts) + "}"


def with_literal_arrays(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with each list as an array literal."""
    return {
        name: literal(value) if isinstance(value, list) else value for name, value in params.items()
    }
