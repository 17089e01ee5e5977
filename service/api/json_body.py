"""Parsing a JSON request body a caller controls: every way it can go wrong is a 400, never a 500.

``json.loads`` recurses once per nesting level, so ~1,000 levels of ``[`` raise ``RecursionError``
(and fewer, on a deep call stack); a number of more than 4,300 digits raises a plain ``ValueError``
(CPython's integer-string limit), not ``JSONDecodeError``. Both become ``InvalidArgument`` here,
and any document nested deeper than ``max_depth`` is refused the same way: no request shape this
gateway accepts is deeper than a few levels.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import InvalidArgument

#: a whole JSON string (escapes included), or one bracket
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
#: deeper than any request this gateway understands, far below the interpreter's recursion limit
DEFAULT_MAX_DEPTH = 64


def load_json(body: bytes | str, max_depth: int = DEFAULT_MAX_DEPTH, what: str = "the JSON body") -> Any:
    """The parsed document, or ``InvalidArgument`` naming what was wrong with it."""
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    # Nesting needs a bracket per level: a body with few brackets cannot be too deep, and counting
    # them runs in C, so the common case ({"image": "<base64>"}) pays nothing more.
    if raw.count(b"[") + raw.count(b"{") > max_depth:
        _check_depth(raw, max_depth, what)
    try:
        return json.loads(raw)
    except RecursionError:
        raise InvalidArgument(f"{what} is nested too deeply; the limit is {max_depth} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise InvalidArgument(f"{what} cannot be parsed: {exc}") from exc


def _check_depth(raw: bytes, max_depth: int, what: str) -> None:
    """Refuse nesting deeper than ``max_depth`` before the recursive parser sees it.

    The scan skips whole strings (brackets inside them do not count) and numbers in C; only the
    brackets themselves reach Python. Malformed text is left for the parser to describe.
    """
    depth = 0
    for token in _TOKENS.finditer(raw):
        first = raw[token.start()]
        if first in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > max_depth:
                raise InvalidArgument(f"{what} is nested too deeply; the limit is {max_depth} levels")
        elif first in (0x5D, 0x7D):  # ] }
            depth -= 1
