"""JSON Schemas for USP's messages: the checked-in source of truth for what crosses a topic.

They live in a package so an installed wheel carries them; `load(name)` returns one as a dict.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

NAMES = ("observation", "prediction", "event", "deadletter")


@cache
def load(name: str) -> dict[str, Any]:
    """Return the schema `name` (one of NAMES) as a dict.

    >>> load("observation")["required"]
    ['series_id', 'ts', 'value']
    """
    if name not in NAMES:
        raise KeyError(f"unknown schema {name!r}; known: {', '.join(NAMES)}")
    text = resources.files(__name__).joinpath(f"{name}.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
