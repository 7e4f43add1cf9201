"""The small subset of Go text/template that SPIFFE ID templates use, rendered the way Kuma and SPIRE render them.

Supported actions: `{{ .A.B }}` (field path), `{{ label "key" }}` (Kuma's label function) and
`{{ index .A.B "key" }}`; `{{-` / `-}}` trim markers. Anything else fails to parse, like a broken Go template.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

_ACTION = re.compile(r"\{\{(-?)(.*?)(-?)\}\}", re.DOTALL)
_FIELD = re.compile(r"^(\.[A-Za-z_][A-Za-z0-9_]*)+$")

Functions = Mapping[str, Callable[..., str]]
NO_FUNCTIONS: Functions = MappingProxyType({})


class TemplateError(ValueError):
    """The template does not parse, or it refers to something the data does not have."""


def _split(template: str, name: str = "") -> list[tuple[str, str]]:
    """Split into ("text", s) and ("action", s) parts, applying trim markers."""
    parts: list[tuple[str, str]] = []
    pos = 0
    for match in _ACTION.finditer(template):
        text = template[pos:match.start()]
        if match.group(1):
            text = text.rstrip()
        parts.append(("text", text))
        parts.append(("action", match.group(2).strip()))
        pos = match.end()
        if match.group(3):
            rest = template[pos:]
            pos += len(rest) - len(rest.lstrip())
    tail = template[pos:]
    if "{{" in tail:
        raise TemplateError(f"template: {name}:1: unclosed action")
    parts.append(("text", tail))
    return parts


def _field(path: str, data: Any) -> Any:
    value = data
    for name in path.split(".")[1:]:
        if not isinstance(value, Mapping) or name not in value:
            raise TemplateError(f"can't evaluate field {name} in {path}")
        value = value[name]
    return value


def _action(action: str, data: Any, functions: Functions) -> str:
    try:
        words = shlex.split(action)
    except ValueError as exc:
        raise TemplateError(f"template: bad action {{{{ {action} }}}}: {exc}") from exc
    if len(words) == 1 and _FIELD.match(words[0]):
        return str(_field(words[0], data))
    if len(words) == 3 and words[0] == "index" and _FIELD.match(words[1]):
        container = _field(words[1], data)
        if not isinstance(container, Mapping):
            raise TemplateError(f"can't index {words[1]}")
        return str(container.get(words[2], ""))
    if len(words) == 2 and words[0] in functions:
        return str(functions[words[0]](words[1]))
    raise TemplateError(f"template: unsupported action {{{{ {action} }}}}")


def check(template: str, functions: Functions = NO_FUNCTIONS, name: str = "") -> None:
    """Raise TemplateError when `template` does not parse (fields are not resolved); the message is Go's, with the
    template's `name` (text/template: `template: <name>:<line>: ...`)."""
    for kind, text in _split(template, name):
        if kind == "action":
            words = text.split()
            if not words:
                raise TemplateError(f"template: {name}:1: missing value for command")
            if not (words[0].startswith(".") or words[0] == "index" or words[0] in functions):
                raise TemplateError(f'template: {name}:1: function "{words[0]}" not defined')


def render(template: str, data: Mapping[str, Any], functions: Functions = NO_FUNCTIONS) -> str:
    """Render `template` against `data`; raise TemplateError when it does not parse or cannot be evaluated."""
    check(template, functions)
    return "".join(text if kind == "text" else _action(text, data, functions) for kind, text in _split(template))
