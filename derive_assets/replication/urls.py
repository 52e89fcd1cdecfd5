"""Source connection URLs: where they come from (an environment variable per source), whether they fit the
source's `type` (checked before anything connects), and how they are shown (never with their secrets).

`redact` shows one URL; `scrub` cleans a driver's message that may quote a URL or a password. Neither raises,
whatever the input: an error path that itself fails would show the raw value in its traceback.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import quote, quote_plus, unquote, unquote_plus, urlsplit

from derive_assets.specs.models import SourceSpec

SCHEMES: dict[str, tuple[str, ...]] = {
    "postgres": ("postgresql", "postgres"),
    "mysql": ("mysql",),
    "sqlite": ("sqlite",),
    "mongodb": ("mongodb", "mongodb+srv", "montydb"),
}
"""URL schemes each source `type` accepts (what connectorx, sqlite3 and pymongo/montydb read)."""
EXAMPLES = {
    "postgres": "postgresql://user:password@host:5432/database",
    "mysql": "mysql://user:password@host:3306/database",
    "sqlite": "sqlite:///path/to/file.db",
    "mongodb": "mongodb://user:password@host:27017/",
}
SHOWN_CHARS = 300
"""Longest redacted URL or driver message put in an error; the rest is cut."""
SECRET_KEYS = "password|passwd|pwd|pass|sslpassword|secret|token|access_token|api_key|apikey"
"""Names of query-string and keyword-DSN parameters whose values are secrets."""

_SCHEME = re.compile(r"\s*([A-Za-z][A-Za-z0-9+.\-]*)://")
_QUERY_SECRET = re.compile(rf"(?i)([?&;](?:{SECRET_KEYS}))=([^&\s]*)")
_KEYWORD_SECRET = re.compile(rf"(?i)\b((?:{SECRET_KEYS})\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)")
_USERINFO_IN_TEXT = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@'\"]*):[^\s'\"]*@")
_KEYWORD_DSN = re.compile(r"^\s*[A-Za-z_]+\s*=")


class SourceConnectionError(RuntimeError):
    """The source database could not be reached or read; the message never contains the URL's secrets."""


class SourceURLError(SourceConnectionError):
    """The URL in the source's variable cannot be used for the source's `type`; nothing connected."""

    def __init__(self, source: SourceSpec, problem: str) -> None:
        self.source_name = source.name
        self.connection_env = source.connection_env
        super().__init__(f"source '{source.name}': {source.connection_env} {problem}")


def resolve_url(source: SourceSpec, embedded_dir: Path) -> str:
    """The source's URL from its environment variable, checked against the source's `type`; sqlite and mongodb
    sources fall back to the embedded demo stores (a SQLite file, a montydb directory) under `embedded_dir`."""
    url = os.environ.get(source.connection_env)
    if url:
        check_url(source, url)
        return url
    if source.type == "sqlite":
        return f"sqlite:///{embedded_dir / f'{source.name}.db'}"
    if source.type == "mongodb":
        return f"montydb:///{embedded_dir / source.name}"
    raise SourceConnectionError(
        f"source '{source.name}': environment variable {source.connection_env} is not set; set it to the "
        f"{source.type} connection URL (e.g. {EXAMPLES[source.type]})"
    )


def check_url(source: SourceSpec, url: str) -> None:
    """Refuse a value that is not a URL for this source's `type` (no connection is made). The messages name the
    variable and the fix; they show the scheme at most, never the value."""
    example = EXAMPLES[source.type]
    match = _SCHEME.match(url)
    if match is None:
        if _KEYWORD_DSN.match(url):
            keys = sorted({k.lower() for k in re.findall(r"([A-Za-z_]+)\s*=", url)})[:10]
            raise SourceURLError(
                source,
                f"holds a keyword connection string (keys {', '.join(keys)}), not a URL. Derive needs a URL: "
                f"set {source.connection_env} to e.g. {example} (percent-encode special characters in the "
                "password, e.g. with urllib.parse.quote(password, safe=''))",
            )
        raise SourceURLError(
            source, f"holds a value that is not a URL (no scheme://); set it to e.g. {example}"
        )
    scheme = match.group(1).lower()
    if scheme not in SCHEMES[source.type]:
        raise SourceURLError(source, _scheme_problem(source, scheme[:30]))
    if scheme in ("postgresql", "postgres", "mysql"):
        try:
            parts = urlsplit(url)
            port, host = parts.port, parts.hostname  # both raise ValueError on a malformed host or port
        except ValueError:
            # The parser's message quotes the host/port text, which holds the password when '@' or ':' in it
            # was not percent-encoded: say what to do instead.
            raise SourceURLError(
                source,
                "holds a URL whose host and port cannot be parsed (a bracketed IPv6 host must be closed, "
                "e.g. [::1]:5432; '@', ':', '/' and '%' in the user name or password must be percent-encoded, "
                f"e.g. with urllib.parse.quote(password, safe='')); expected e.g. {example}",
            ) from None
        if not host:
            raise SourceURLError(source, f"holds a URL without a host; expected e.g. {example}")
        del port


def _scheme_problem(source: SourceSpec, scheme: str) -> str:
    allowed = " or ".join(f"{s}://" for s in SCHEMES[source.type])
    base = scheme.split("+", 1)[0]
    if base != scheme and base in SCHEMES[source.type]:
        return (
            f"holds a {scheme}:// URL; Derive reads {source.type} sources with its own driver, so drop the "
            f"'+{scheme.split('+', 1)[1]}' suffix: {allowed}"
        )
    fits = next((t for t, schemes in SCHEMES.items() if base in schemes), None)
    change = f"set `type: {fits}` in the source's spec, or " if fits else ""
    unset = " (or unset it to use the embedded demo database)" if source.type in ("sqlite", "mongodb") else ""
    return (
        f"holds a {scheme}:// URL, but source '{source.name}' has `type: {source.type}`, which needs "
        f"{allowed}. Either {change}set {source.connection_env} to a {source.type} URL such as "
        f"{EXAMPLES[source.type]}{unset}. Nothing was read."
    )


def redact(url: str) -> str:
    """`url` as it may be shown: the password (in the user info, the query string or a `password=` keyword) is
    `***`, the rest cut to `SHOWN_CHARS`. A value that is neither a URL nor a keyword string is not shown."""
    text = url if isinstance(url, str) else repr(type(url))
    match = _SCHEME.match(text)
    if match is None:
        if _KEYWORD_DSN.match(text):
            return _cut(_KEYWORD_SECRET.sub(r"\1***", text))
        return "<a value that is not a URL, not shown>"
    rest = text[match.end() :]
    at = rest.rfind("@")  # the last '@': an unencoded '@' in the password comes before it
    if at >= 0 and ":" in rest[:at]:
        user = rest[: rest.index(":")]
        rest = f"{user}:***@{rest[at + 1 :]}"
    rest = _QUERY_SECRET.sub(r"\1=***", rest)
    return _cut(f"{match.group(1)}://{rest}")


def scrub(text: str, *urls: str) -> str:
    """A driver's message with every secret of `urls` removed (raw, percent-decoded and percent-encoded),
    every URL's user info password and every `password=` value masked, and its length bounded."""
    text = text if isinstance(text, str) else repr(type(text))
    for url in urls:
        if isinstance(url, str) and url:
            text = text.replace(url, redact(url))
    for secret in sorted({s for url in urls for s in _secrets(url)}, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = _USERINFO_IN_TEXT.sub(r"\1:***@", text)
    text = _QUERY_SECRET.sub(r"\1=***", text)
    return _cut(_KEYWORD_SECRET.sub(r"\1***", text))


def _secrets(url: str) -> set[str]:
    """Every spelling of the passwords in `url` that a driver might print."""
    if not isinstance(url, str):
        return set()
    raw: list[str] = []
    match = _SCHEME.match(url)
    if match is not None:
        rest = url[match.end() :]
        at = rest.rfind("@")
        if at >= 0 and ":" in rest[:at]:
            raw.append(rest[rest.index(":") + 1 : at])
        raw += [value for _, value in _QUERY_SECRET.findall(rest)]
    else:
        raw += [value.strip("'") for _, value in _KEYWORD_SECRET.findall(url)]
    found: set[str] = set()
    for value in raw:
        for plain in (value, unquote(value), unquote_plus(value)):
            found |= {plain, quote(plain, safe=""), quote_plus(plain), quote(plain)}
    return {s for s in found if s}


def _cut(text: str) -> str:
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}… ({len(text)} characters)"
