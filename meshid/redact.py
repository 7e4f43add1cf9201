"""Remove secrets (tokens, client keys, passwords, private keys, JWTs, registered literals) from text."""

from __future__ import annotations

import re
import threading

REDACTED = "<redacted>"

# Keys whose values are secret in kubeconfigs, JSON, YAML, env files and CLI flags (`--token=...`).
_SECRET_KEY = r"[\w-]*token|client-key-data|client-certificate-data|certificate-authority-data|password"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # PEM private keys, also when the text was cut before the END line.
    (
        re.compile(r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(?:-----END \1PRIVATE KEY-----|\Z)", re.DOTALL),
        REDACTED,
    ),
    # Bearer tokens (Authorization headers); before key: value so "token: Bearer x" loses x, not just "Bearer".
    (re.compile(r"\b(bearer[ \t]+)[A-Za-z0-9\-._~+/]+=*", re.IGNORECASE), rf"\g<1>{REDACTED}"),
    # key: value, "key": "value", key=value: the key and the value's quotes stay, the value goes.
    (
        re.compile(
            rf"""(?P<key>(?P<q>["']?)\b(?:{_SECRET_KEY})(?P=q)[ \t]*[:=][ \t]*)(?P<vq>["'])?"""
            r"""(?(vq)(?:(?!(?P=vq))[^\\\n]|\\.)*(?P=vq)|[^\s"',}\]]+)""",
            re.IGNORECASE,
        ),
        rf"\g<key>\g<vq>{REDACTED}\g<vq>",
    ),
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
    # The password of a URL's user info (scheme://user:password@host, RFC 3986 section 3.2.1).
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+@", re.IGNORECASE), rf"\g<1>{REDACTED}@"),
)

_MIN_LITERAL = 4  # shorter literals would blank out ordinary words
_lock = threading.Lock()
_literals: set[str] = set()
_literal_re: re.Pattern[str] | None = None


def register_secret(value: str) -> None:
    """Redact this literal (e.g. a token read from a kubeconfig) from now on; ignores values under 4 chars."""
    global _literal_re
    value = value.strip()
    if len(value) < _MIN_LITERAL:
        return
    with _lock:
        _literals.add(value)
        _literal_re = re.compile("|".join(re.escape(v) for v in sorted(_literals, key=len, reverse=True)))


def redact(text: str) -> str:
    """Return `text` with every known kind of secret replaced by `<redacted>`."""
    literal_re = _literal_re
    if literal_re is not None:
        text = literal_re.sub(REDACTED, text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
