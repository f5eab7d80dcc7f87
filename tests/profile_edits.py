"""Test helper: a copy of a profile's JSON with one field replaced or deleted."""

from __future__ import annotations

import copy


def corrupt(data: dict, path: str, value) -> dict:
    """``path`` is dotted (``prefill.join.per_join_s``); ``value`` KeyError deletes it."""
    data = copy.deepcopy(data)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return data
