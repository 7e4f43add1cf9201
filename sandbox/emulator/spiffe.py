"""SPIFFE ID syntax as go-spiffe's `spiffeid.FromString` checks it (what Kuma's validator uses)."""

from __future__ import annotations

import re

SCHEME = "spiffe://"
_TRUST_DOMAIN = re.compile(r"^[a-z0-9._-]+$")
_SEGMENT = re.compile(r"^[a-zA-Z0-9._-]+$")


def is_valid_trust_domain(name: str) -> bool:
    """True for a non-empty trust domain of lowercase letters, digits, '.', '-', '_'."""
    return bool(_TRUST_DOMAIN.match(name))


def is_valid_id(value: str) -> bool:
    """True when `value` is `spiffe://<trust domain>[/<segment>...]` with no empty, '.' or '..' segment."""
    if not value.startswith(SCHEME):
        return False
    trust_domain, slash, path = value[len(SCHEME):].partition("/")
    if not is_valid_trust_domain(trust_domain):
        return False
    if not slash:
        return True
    return all(_SEGMENT.match(s) and s not in (".", "..") for s in path.split("/"))


def trust_domain_of(value: str) -> str:
    """The trust domain part of a SPIFFE ID (no validation)."""
    return value[len(SCHEME):].partition("/")[0] if value.startswith(SCHEME) else ""
