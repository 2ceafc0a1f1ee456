"""Reads the block-style subset of YAML that deploy/prometheus/*.yml are written in, since
PyYAML is not a dependency of the project: nested mappings and lists, quoted and plain
scalars, comments. Anything else (flow collections, block scalars, anchors) is refused, so
the files stay within what this reader checks."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_KEY = re.compile(r"^([A-Za-z0-9_.\-]+):(?:\s+|$)")
_INT = re.compile(r"^-?\d+$")
_FLOAT = re.compile(r"^-?\d+\.\d+$")


@dataclass(frozen=True)
class _Line:
    number: int
    indent: int
    text: str


class YamlSubsetError(ValueError):
    pass


def load(source: str) -> Any:
    lines = []
    for number, raw in enumerate(source.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise YamlSubsetError(f"line {number}: tab in indentation")
        lines.append(_Line(number, len(raw) - len(raw.lstrip()), stripped))
    if not lines:
        return None
    value, end = _block(lines, 0, lines[0].indent)
    if end != len(lines):
        raise YamlSubsetError(f"line {lines[end].number}: unexpected indentation")
    return value


def _block(lines: list[_Line], start: int, indent: int) -> tuple[Any, int]:
    if lines[start].text.startswith("- ") or lines[start].text == "-":
        return _sequence(lines, start, indent)
    return _mapping(lines, start, indent)


def _sequence(lines: list[_Line], start: int, indent: int) -> tuple[list[Any], int]:
    items: list[Any] = []
    index = start
    while index < len(lines) and lines[index].indent == indent:
        line = lines[index]
        if not (line.text.startswith("- ") or line.text == "-"):
            break
        rest = line.text[1:].strip()
        if not rest:
            item, index = _nested(lines, index + 1, indent)
        elif _KEY.match(rest):
            # "- key: value" opens a mapping whose keys sit two columns further in.
            inner = _Line(line.number, indent + 2, rest)
            item, index = _mapping([*lines[:index], inner, *lines[index + 1 :]], index, indent + 2)
        else:
            item, index = _scalar(rest, line.number), index + 1
        items.append(item)
    return items, index


def _mapping(lines: list[_Line], start: int, indent: int) -> tuple[dict[str, Any], int]:
    mapping: dict[str, Any] = {}
    index = start
    while index < len(lines) and lines[index].indent == indent:
        line = lines[index]
        match = _KEY.match(line.text)
        if match is None:
            raise YamlSubsetError(f"line {line.number}: expected `key: value`")
        key = match.group(1)
        if key in mapping:
            raise YamlSubsetError(f"line {line.number}: duplicate key {key!r}")
        rest = line.text[match.end() :]
        if rest and not rest.startswith("#"):
            mapping[key], index = _scalar(rest, line.number), index + 1
            continue
        following = lines[index + 1] if index + 1 < len(lines) else None
        if following is not None and following.indent == indent and following.text[:2] == "- ":
            mapping[key], index = _sequence(lines, index + 1, indent)
        else:
            mapping[key], index = _nested(lines, index + 1, indent)
    return mapping, index


def _nested(lines: list[_Line], start: int, indent: int) -> tuple[Any, int]:
    if start < len(lines) and lines[start].indent > indent:
        return _block(lines, start, lines[start].indent)
    return None, start


_CONSTANTS: dict[str, Any] = {"true": True, "false": False, "null": None, "~": None}


def _scalar(text: str, number: int) -> Any:
    if text[0] in "'\"":
        return _quoted(text, number)
    value = re.split(r"\s#", text, maxsplit=1)[0].strip()
    if value[0] in "[{|>&*!%@`":
        raise YamlSubsetError(f"line {number}: {value[0]!r} is outside the supported subset")
    if value in _CONSTANTS:
        return _CONSTANTS[value]
    if _INT.match(value):
        return int(value)
    if _FLOAT.match(value):
        return float(value)
    if ": " in value:
        raise YamlSubsetError(f"line {number}: quote a value that holds ': '")
    return value


def _quoted(text: str, number: int) -> str:
    single = text[0] == "'"
    pattern = r"'((?:[^']|'')*)'" if single else r'"((?:[^"\\]|\\.)*)"'
    match = re.match(pattern, text)
    if match is None:
        raise YamlSubsetError(f"line {number}: unterminated string")
    after = text[match.end() :].strip()
    if after and not after.startswith("#"):
        raise YamlSubsetError(f"line {number}: text after a quoted string")
    if single:
        return match.group(1).replace("''", "'")
    decoded: str = json.loads(match.group(0))
    return decoded
