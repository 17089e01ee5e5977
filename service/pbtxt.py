"""Read and write Triton's ``config.pbtxt`` (protobuf text format) without protobuf.

The gateway must read model configs with no Triton installed, so this is a small parser for the
subset of text format that model configs use. ``parse`` returns the same shape Triton's model-config
endpoint returns as JSON (``parameters`` as ``{key: {"string_value": ...}}``, repeated fields as
lists), so the embedded runtime and the Triton backend feed one ``ModelSpec`` constructor.
Tests check that everything ``dump`` writes parses with Triton's own ``ModelConfig`` schema.
"""

from __future__ import annotations

import re
from typing import Any

#: fields that ``ModelConfig`` declares ``repeated``; a single occurrence still becomes a list
REPEATED = frozenset({
    "input", "output", "dims", "instance_group", "preferred_batch_size", "gpus", "versions",
    "shape", "model_warmup", "batch_input", "batch_output", "profile", "secondary_devices",
})
#: fields whose values are enum names, written unquoted
ENUM_FIELDS = frozenset({"data_type", "kind", "format", "priority", "timeout_action", "type", "action"})

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<comment>\#[^\n]*)
      | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<number>[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)[fF]?)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
      | (?P<punct>[{}\[\]:,;<>])
    )""",
    re.VERBOSE,
)


class PbtxtError(ValueError):
    pass


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise PbtxtError(f"cannot read config.pbtxt near: {text[pos:pos + 40]!r}")
        pos = m.end()
        kind = m.lastgroup
        assert kind is not None
        if kind != "comment":
            out.append((kind, m.group(kind)))
    return out


def _scalar(kind: str, value: str) -> Any:
    if kind == "string":
        return bytes(value[1:-1], "utf-8").decode("unicode_escape")
    if kind == "number":
        v = value.rstrip("fF")
        return int(v) if re.fullmatch(r"[-+]?\d+", v) else float(v)
    if value in ("true", "false"):
        return value == "true"
    return value  # enum name


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def _peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def _take(self, expected: str | None = None) -> tuple[str, str]:
        tok = self._peek()
        if tok is None or (expected is not None and tok[1] != expected):
            raise PbtxtError(f"config.pbtxt: expected {expected or 'a value'}, found {tok and tok[1]!r}")
        self.i += 1
        return tok

    def message(self, closer: str | None) -> dict[str, list[Any]]:
        fields: dict[str, list[Any]] = {}
        while True:
            tok = self._peek()
            if tok is None:
                if closer is not None:
                    raise PbtxtError(f"config.pbtxt: missing {closer!r}")
                return fields
            if closer is not None and tok[1] == closer:
                self.i += 1
                return fields
            kind, name = self._take()
            if kind != "ident":
                raise PbtxtError(f"config.pbtxt: expected a field name, found {name!r}")
            values = fields.setdefault(name, [])
            nxt = self._peek()
            if nxt and nxt[1] == ":":
                self.i += 1
                nxt = self._peek()
            if nxt and nxt[1] == "[":
                self.i += 1
                while (tok := self._peek()) and tok[1] != "]":
                    values.append(self.value())
                    if (tok := self._peek()) and tok[1] == ",":
                        self.i += 1
                self._take("]")
            else:
                values.append(self.value())
            if (tok := self._peek()) and tok[1] in ",;":
                self.i += 1

    def value(self) -> Any:
        kind, text = self._take()
        if text in ("{", "<"):
            return self.message("}" if text == "{" else ">")
        if kind in ("string", "number", "ident"):
            if kind == "string":  # adjacent string literals concatenate
                parts = [_scalar(kind, text)]
                while (tok := self._peek()) and tok[0] == "string":
                    parts.append(_scalar(*self._take()))
                return "".join(parts)
            return _scalar(kind, text)
        raise PbtxtError(f"config.pbtxt: unexpected {text!r}")


def _normalise(fields: dict[str, list[Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, values in fields.items():
        values = [_normalise(v) if isinstance(v, dict) else v for v in values]
        if name == "parameters":
            out[name] = {p["key"]: p.get("value", {}) for p in values}
        elif name in REPEATED:
            out[name] = values
        else:
            out[name] = values[-1]
    return out


def parse(text: str) -> dict[str, Any]:
    """Parse config.pbtxt text into a dict shaped like Triton's model-config JSON."""
    return _normalise(_Parser(text).message(None))


def _fmt_scalar(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if name in ENUM_FIELDS:
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def dump(config: dict[str, Any], indent: int = 0) -> str:
    """Write a dict shaped like ``parse``'s output back as config.pbtxt text."""
    pad = "  " * indent
    lines: list[str] = []
    for name, value in config.items():
        if name == "parameters" and isinstance(value, dict):
            for key, val in value.items():
                lines.append(f'{pad}parameters {{ key: {_fmt_scalar("key", key)} value {{ '
                             f'string_value: {_fmt_scalar("string_value", val["string_value"])} }} }}')
        elif isinstance(value, dict):
            lines.append(f"{pad}{name} {{\n{dump(value, indent + 1)}{pad}}}")
        elif isinstance(value, list):
            if value and all(isinstance(v, dict) for v in value):
                for v in value:
                    lines.append(f"{pad}{name} {{\n{dump(v, indent + 1)}{pad}}}")
            else:
                lines.append(f"{pad}{name}: [ {', '.join(_fmt_scalar(name, v) for v in value)} ]")
        else:
            lines.append(f"{pad}{name}: {_fmt_scalar(name, value)}")
    return "".join(line + "\n" for line in lines)
