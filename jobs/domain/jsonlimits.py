"""JSON read with limits, for everything people send: API bodies, socket messages, dataset lines.

Python's json module takes any depth until it overflows the stack, any number of digits until
``int()`` refuses, lone surrogates and NUL characters that PostgreSQL then refuses to store. Each
of those would surface as a server error far from its cause; here each is a ``JSONRefused`` whose
message names the problem, raised before anything is stored.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 32  # hyperparameters and chat messages need a few levels, not hundreds
MAX_NUMBER_CHARS = 100  # a float64 prints in 24; a few more for people's own formatting


class JSONRefused(ValueError):
    """Text that is not JSON, or JSON past a limit; the message says which, in words."""


def _number(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        if len(text) > MAX_NUMBER_CHARS:
            raise JSONRefused(
                f"a number {len(text)} characters long; at most {MAX_NUMBER_CHARS} are allowed"
            )
        return kind(text)

    return parse


def _no_constant(name: str) -> Any:
    raise JSONRefused(f"{name} is not a JSON value")


def loads_bounded(data: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """The value of a JSON text, or ``JSONRefused`` naming what is wrong with it."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise JSONRefused(f"not UTF-8 text (byte {error.start})") from None
    try:
        value = json.loads(
            data,
            parse_int=_number(int),
            parse_float=_number(float),
            parse_constant=_no_constant,
        )
    except RecursionError:
        raise JSONRefused(f"nested more than {max_depth} levels deep") from None
    except json.JSONDecodeError as error:
        raise JSONRefused(
            f"not JSON ({error.msg} at line {error.lineno}, column {error.colno})"
        ) from None
    check_value(value, max_depth)
    return value


def check_value(value: Any, max_depth: int = MAX_DEPTH) -> None:
    """Depth, and strings that every store can hold (no lone surrogates, no NUL), checked
    without recursion so a deep value cannot overflow the stack here either."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                raise JSONRefused(f"nested more than {max_depth} levels deep")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, str):
            _check_text(item)


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise JSONRefused("a string holds a NUL character (\\u0000), which cannot be stored")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        code = ord(text[error.start])
        raise JSONRefused(
            f"a string holds a lone surrogate (\\u{code:04x}), which is not a character"
        ) from None
