"""Formatting filters for the templates: every value from a config reaches a generated file through one of these.

Each filter produces a literal of the target language (Python, YAML, Markdown) that can hold any string
inertly, so a hostile value becomes data, never code.
"""

from __future__ import annotations

import json
import re
from typing import Any

from jinja2 import Environment

from automodel_onboard.model.spec import plain

MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()<>#+!|])")


def py(value: Any) -> str:
    """A Python literal of JSON-like data (``repr`` escapes quotes, newlines and NULs in strings)."""
    value = plain(value)
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        raise ValueError(f"{value!r} has no Python literal")
    return repr(value)


def yaml(value: Any) -> str:
    """A YAML flow scalar or collection: JSON is a subset of YAML, so json.dumps is always safe."""
    return json.dumps(plain(value), ensure_ascii=True)


def md(value: Any) -> str:
    """Text safe inside a Markdown/MDX paragraph or table cell."""
    text = " ".join(str(value).split())
    return MARKDOWN_SPECIALS.sub(r"\\\1", text)


def register_filters(environment: Environment) -> None:
    environment.filters.update(py=py, yaml=yaml, md=md)
