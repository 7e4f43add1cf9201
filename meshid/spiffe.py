"""SPIFFE trust domains and IDs, and MeshIdentity / ClusterSPIFFEID templates: validation, lint, rendering.

Templates use the subset of Go text/template that Kuma 2.12 documents: `{{ .Var }}` and `{{ label "key" }}`,
with optional trim markers (`{{- ... -}}`). Kuma 2.12 does not validate path templates (its validator parses
the trust domain twice), so a typo only shows up as missing identities: lint them here instead.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Mapping

from meshid.errors import InputError

SCHEME = "spiffe://"
TRUST_DOMAIN_VARS = frozenset({"Mesh", "Zone"})
PATH_VARS = frozenset({"TrustDomain", "Namespace", "ServiceAccount"})
DEFAULT_TRUST_DOMAIN_TEMPLATE = "{{ .Mesh }}.{{ .Zone }}.mesh.local"
DEFAULT_PATH_TEMPLATE = "/ns/{{ .Namespace }}/sa/{{ .ServiceAccount }}"
# spiffeIDTemplate of the guide's ClusterSPIFFEID (and of the spire chart's default one), rendered by SPIRE.
SPIRE_ID_TEMPLATE = "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}"

_TD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-_")
_PATH_CHARS = _TD_CHARS | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_MAX_TD_LEN = 255
_MAX_ID_BYTES = 2048

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)
_VAR = re.compile(r"\.([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)")
_LABEL = re.compile(r'label\s+"([^"\\]+)"')

Token = tuple[str, str]  # ("text", literal) | ("var", name) | ("label", key)


def _chars(chars: Collection[str]) -> str:
    return ", ".join(repr(c) for c in sorted(chars))


def validate_trust_domain(td: str, field: str = "trust_domain") -> str:
    """Return `td` if it is a valid SPIFFE trust domain, else raise InputError naming `field`."""
    if not td:
        raise InputError(field, "trust domain is empty", "give a trust domain such as example.org")
    if "://" in td:
        raise InputError(
            field, f"trust domain {td!r} includes a scheme", "give the trust domain alone, e.g. example.org"
        )
    if len(td) > _MAX_TD_LEN:
        raise InputError(
            field, f"trust domain is {len(td)} characters long; SPIFFE allows at most {_MAX_TD_LEN}",
            "use a shorter trust domain",
        )
    if any("A" <= c <= "Z" for c in td):
        raise InputError(field, f"trust domain {td!r} contains uppercase letters", f"use lowercase: {td.lower()}")
    if "/" in td:
        raise InputError(field, f"trust domain {td!r} contains a path", f"drop the path: {td.partition('/')[0]}")
    if ":" in td:
        raise InputError(field, f"trust domain {td!r} contains a port", f"drop the port: {td.partition(':')[0]}")
    if bad := set(td) - _TD_CHARS:
        raise InputError(
            field, f"trust domain {td!r} contains characters SPIFFE does not allow: {_chars(bad)}",
            "use only lowercase letters, digits, '.', '-' and '_'",
        )
    if td.startswith(".") or td.endswith("."):
        raise InputError(field, f"trust domain {td!r} starts or ends with '.'", f"drop the dot: {td.strip('.')}")
    if ".." in td:
        raise InputError(field, f"trust domain {td!r} has an empty label ('..')", "use a single '.' between labels")
    return td


def _check_path(path: str, field: str) -> None:
    """Raise InputError unless `path` is a valid, non-empty SPIFFE ID path."""
    if not path.startswith("/"):
        raise InputError(field, f"path {path!r} does not start with '/'", "start it with '/'")
    if path.endswith("/"):
        raise InputError(field, f"path {path!r} ends with '/'", "remove the trailing '/'")
    for segment in path[1:].split("/"):
        if not segment:
            raise InputError(
                field, f"path {path!r} has an empty segment ('//')", "use a single '/' between segments"
            )
        if segment in (".", ".."):
            raise InputError(field, f"path {path!r} has a {segment!r} segment", "replace it with a named segment")
        if bad := set(segment) - _PATH_CHARS:
            raise InputError(
                field, f"path {path!r} contains characters SPIFFE does not allow: {_chars(bad)}",
                "use only letters, digits, '.', '-' and '_' between the '/'",
            )


def parse_spiffe_id(value: str, field: str = "spiffe_id") -> tuple[str, str]:
    """Split a valid SPIFFE ID into (trust domain, path); the path is "" or starts with "/"."""
    if len(value.encode()) > _MAX_ID_BYTES:
        raise InputError(
            field, f"SPIFFE ID is longer than {_MAX_ID_BYTES} bytes", "use a shorter trust domain or path"
        )
    if not value.startswith(SCHEME):
        raise InputError(
            field, f"{value!r} does not start with {SCHEME}", f"write it as {SCHEME}<trust domain>/<path>"
        )
    if "?" in value or "#" in value:
        raise InputError(field, f"{value!r} has a query or fragment", "remove everything from the first '?' or '#'")
    td, slash, path = value[len(SCHEME):].partition("/")
    validate_trust_domain(td, field)
    path = slash + path
    if path:
        _check_path(path, field)
    return td, path


def validate_spiffe_id(value: str, field: str = "spiffe_id") -> str:
    """Return `value` if it is a valid SPIFFE ID, else raise InputError naming `field`."""
    parse_spiffe_id(value, field)
    return value


def _allowed(allowed_vars: Collection[str]) -> str:
    return ", ".join([*(f".{v}" for v in sorted(allowed_vars)), 'label "key"'])


def _action(action: str, allowed_vars: Collection[str], field: str) -> Token:
    """Classify the inside of one `{{ ... }}`."""
    if not action:
        raise InputError(field, "empty action {{ }}", f"put one of {_allowed(allowed_vars)} in it, or remove it")
    if var := _VAR.fullmatch(action):
        name = var.group(1)
        if name in allowed_vars:
            return ("var", name)
        close = difflib.get_close_matches(name, allowed_vars, n=1)
        raise InputError(
            field, f"unknown variable {action}; allowed: {_allowed(allowed_vars)}",
            f"did you mean .{close[0]}?" if close else "use one of the allowed variables",
        )
    if label := _LABEL.fullmatch(action):
        return ("label", label.group(1))
    raise InputError(
        field, f"unsupported action {{{{ {action} }}}}; allowed: {_allowed(allowed_vars)}",
        "use only variables and label \"key\"",
    )


def _parse(template: str, allowed_vars: Collection[str], field: str) -> list[Token]:
    """Tokenise a template, raising InputError on unbalanced braces, empty actions and unknown names."""
    tokens: list[Token] = []
    pos, trim_next = 0, False

    def text(chunk: str) -> None:
        if "{" in chunk or "}" in chunk:
            raise InputError(field, f"unbalanced braces in {template!r}", "write every action as {{ .Name }}")
        tokens.append(("text", chunk))

    for m in _ACTION.finditer(template):
        chunk = template[pos:m.start()]
        chunk = chunk.lstrip() if trim_next else chunk
        text(chunk.rstrip() if m.group(1) else chunk)
        tokens.append(_action(m.group(2).strip(), allowed_vars, field))
        pos, trim_next = m.end(), bool(m.group(3))
    tail = template[pos:]
    text(tail.lstrip() if trim_next else tail)
    return tokens


def _render(tokens: list[Token], values: Mapping[str, str], labels: Mapping[str, str], field: str) -> str:
    out = []
    for kind, value in tokens:
        if kind == "text":
            out.append(value)
        elif kind == "var":
            out.append(values[value])
        elif value in labels:
            out.append(labels[value])
        else:
            raise InputError(
                field, f'label "{value}" is not set on the workload', f"add label {value} or drop it from the template"
            )
    return "".join(out)


def render_path(
    template: str,
    namespace: str,
    service_account: str,
    trust_domain: str,
    labels: Mapping[str, str] | None = None,
    field: str = "identity_path",
) -> str:
    """Render a MeshIdentity `spiffeID.path` template as Kuma does; the result must be a valid SPIFFE path."""
    values = {"TrustDomain": trust_domain, "Namespace": namespace, "ServiceAccount": service_account}
    path = _render(_parse(template, PATH_VARS, field), values, {} if labels is None else labels, field)
    _check_path(path, field)
    return path


class _AnyLabel(dict[str, str]):
    """Labels that have every key, for linting templates that use `label`."""

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> str:
        return "label"


def lint_path_template(template: str, field: str = "identity_path") -> str:
    """Return `template` if it is a clean path template that renders valid SPIFFE paths, else raise InputError."""
    sample = _render(_parse(template, PATH_VARS, field), {v: v.lower() for v in PATH_VARS}, _AnyLabel(), field)
    try:
        _check_path(sample, field)
    except InputError as exc:
        raise InputError(field, f"{template!r} renders invalid paths, e.g. {exc.problem}", exc.fix) from None
    return template


def render_trust_domain(
    template: str, mesh: str, zone: str, labels: Mapping[str, str] | None = None, field: str = "trust_domain"
) -> str:
    """Render a MeshIdentity `spiffeID.trustDomain` template as Kuma does; the result must be a valid trust domain."""
    tokens = _parse(template, TRUST_DOMAIN_VARS, field)
    td = _render(tokens, {"Mesh": mesh, "Zone": zone}, {} if labels is None else labels, field)
    return validate_trust_domain(td, field)


DEFAULT_TRUST_DOMAIN = render_trust_domain(DEFAULT_TRUST_DOMAIN_TEMPLATE, "default", "default")


def spire_template_id(trust_domain: str, namespace: str, service_account: str) -> str:
    """The SPIFFE ID SPIRE issues for a pod under the guide's ClusterSPIFFEID template."""
    values = {
        "TrustDomain": trust_domain, "PodMeta.Namespace": namespace, "PodSpec.ServiceAccountName": service_account
    }
    tokens = _parse(SPIRE_ID_TEMPLATE, values, "spiffeIDTemplate")
    return validate_spiffe_id(_render(tokens, values, {}, "spiffeIDTemplate"))
