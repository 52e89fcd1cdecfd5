"""Source URLs: the scheme must fit the spec's `type` before anything connects, and no message, whatever the
input, shows a password - `redact` and `scrub` never raise."""

from __future__ import annotations

import random
import string
from pathlib import Path
from urllib.parse import quote, quote_plus, unquote

import pytest

from derive_assets.replication.connections import SourceConnections
from derive_assets.replication.mongo_client import open_mongo
from derive_assets.replication.preflight import preflight
from derive_assets.replication.urls import (
    SHOWN_CHARS,
    SourceConnectionError,
    SourceURLError,
    redact,
    resolve_url,
    scrub,
)
from derive_assets.specs.models import SourceSpec

PLAIN = "Canary-7f3a"
SPECIAL = "c@n:ary/%7f3b"
"""A password with every character a URL must encode; in URLs it appears percent-encoded."""


def source(kind: str = "sqlite", name: str = "accounts") -> SourceSpec:
    return SourceSpec.model_validate(
        {
            "kind": "source",
            "name": name,
            "type": kind,
            "connection_env": f"DERIVE_{name.upper()}_URL",
            "owner": "team:x",
            "tables": [
                {
                    "name": "auth",
                    "primary_key": ["id"],
                    "cursor": "updated_at",
                    "columns": [{"name": "id", "type": "INT64"}, {"name": "updated_at", "type": "TIMESTAMP"}],
                }
            ],
        }
    )


def forms(password: str) -> set[str]:
    return {password, quote(password, safe=""), quote_plus(password)}


def assert_hidden(text: str, password: str) -> None:
    for form in forms(password):
        assert form not in text, f"{form!r} in {text!r}"


# ------------------------------------------------------------------------------------------- item 11: schemes


def test_the_readme_case_is_refused_naming_both_types_the_variable_and_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("DERIVE_ACCOUNTS_URL", f"postgresql://derive:{PLAIN}@127.0.0.1:5432/derive")
    with pytest.raises(SourceURLError) as caught:
        resolve_url(source("sqlite"), tmp_path)
    message = str(caught.value)
    assert message.startswith(
        "source 'accounts': DERIVE_ACCOUNTS_URL holds a postgresql:// URL, but source 'accounts' has "
        "`type: sqlite`, which needs sqlite://. Either set `type: postgres` in the source's spec, or set "
        "DERIVE_ACCOUNTS_URL to a sqlite URL such as sqlite:///path/to/file.db (or unset it"
    )
    assert_hidden(message, PLAIN)
    assert "127.0.0.1" not in message  # nothing of the value but its scheme


@pytest.mark.parametrize(
    ("kind", "url", "expected"),
    [
        ("postgres", "mysql://u:{pw}@h/db", r"holds a mysql:// URL, but .* `type: postgres`, which needs "
         r"postgresql:// or postgres://\. Either set `type: mysql`"),
        ("mysql", "postgres://u:{pw}@h/db", r"holds a postgres:// URL, .* Either set `type: postgres`"),
        ("mysql", "mariadb://u:{pw}@h/db", r"holds a mariadb:// URL, .*needs mysql://\. Either set "
         r"DERIVE_ACCOUNTS_URL to a mysql URL"),
        ("mongodb", "postgresql://u:{pw}@h/db", r"`type: mongodb`, which needs mongodb:// or mongodb\+srv:// or "
         r"montydb://\. Either set `type: postgres`"),
        ("sqlite", "mongodb://u:{pw}@h/", r"Either set `type: mongodb`"),
        ("postgres", "postgresql+psycopg://u:{pw}@h/db", r"holds a postgresql\+psycopg:// URL; .* drop the "
         r"'\+psycopg' suffix: postgresql:// or postgres://"),
        ("postgres", "Postgresql://u:{pw}@h/db", None),
        ("mongodb", "mongodb+srv://u:{pw}@cluster.example.com/", None),
    ],
)  # fmt: skip
def test_a_url_must_fit_the_source_type(monkeypatch, tmp_path, kind, url, expected):
    monkeypatch.setenv("DERIVE_ACCOUNTS_URL", url.format(pw=quote(SPECIAL, safe="")))
    if expected is None:
        assert resolve_url(source(kind), tmp_path) == url.format(pw=quote(SPECIAL, safe=""))
        return
    with pytest.raises(SourceURLError, match=expected) as caught:
        resolve_url(source(kind), tmp_path)
    assert_hidden(str(caught.value), SPECIAL)


@pytest.mark.parametrize(
    "dsn",
    [
        f"host=localhost user=x password={PLAIN} dbname=z",
        f"host=localhost port=5432 password='{PLAIN} with spaces' dbname=z",
        f"  dbname=z password={PLAIN}",
    ],
)
def test_a_keyword_dsn_is_refused_with_an_example_and_without_the_password(monkeypatch, tmp_path, dsn):
    monkeypatch.setenv("DERIVE_ACCOUNTS_URL", dsn)
    with pytest.raises(
        SourceURLError,
        match=r"^source 'accounts': DERIVE_ACCOUNTS_URL holds a keyword connection string \(keys .*password.*\), "
        r"not a URL\. Derive needs a URL: set DERIVE_ACCOUNTS_URL to e\.g\. "
        r"postgresql://user:password@host:5432/database",
    ) as caught:
        resolve_url(source("postgres"), tmp_path)
    assert_hidden(str(caught.value), PLAIN)


@pytest.mark.parametrize("value", [PLAIN, "just some text", "/var/lib/x.db", "://nothing"])
def test_a_value_that_is_no_url_is_refused_without_echoing_it(monkeypatch, tmp_path, value):
    monkeypatch.setenv("DERIVE_ACCOUNTS_URL", value)
    with pytest.raises(SourceURLError, match=r"holds a value that is not a URL \(no scheme://\)") as caught:
        resolve_url(source("postgres"), tmp_path)
    assert value not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://u:{PLAIN}@[::1",  # unclosed IPv6 bracket: urlsplit raises "Invalid IPv6 URL"
        f"postgresql://u:{SPECIAL}@host/db",  # unencoded ':' and '/' in the password: the port is 'ary'
        f"mysql://u:{PLAIN}@host:notaport/db",
        f"mysql://u:{PLAIN}@host:99999/db",
    ],
)
def test_a_malformed_url_is_refused_without_the_parsers_echo(monkeypatch, tmp_path, url):
    monkeypatch.setenv("DERIVE_ACCOUNTS_URL", url)
    kind = "postgres" if url.startswith("postgresql") else "mysql"
    with pytest.raises(
        SourceURLError,
        match=r"^source 'accounts': DERIVE_ACCOUNTS_URL holds a URL whose host and port cannot be parsed "
        r"\(a bracketed IPv6 host must be closed, e\.g\. \[::1\]:5432; '@', ':', '/' and '%' in the user name or "
        r"password must be percent-encoded",
    ) as caught:
        resolve_url(source(kind), tmp_path)
    assert_hidden(str(caught.value), PLAIN)
    assert_hidden(str(caught.value), SPECIAL)
    assert "'ary'" not in str(caught.value)  # urlsplit's own message would quote this piece of the password


def test_an_unset_variable_falls_back_to_the_demo_store_or_says_what_to_set(monkeypatch, tmp_path):
    monkeypatch.delenv("DERIVE_ACCOUNTS_URL", raising=False)
    assert resolve_url(source("sqlite"), tmp_path) == f"sqlite:///{tmp_path / 'accounts.db'}"
    with pytest.raises(SourceConnectionError, match="DERIVE_ACCOUNTS_URL is not set; set it to the postgres"):
        resolve_url(source("postgres"), tmp_path)


# ------------------------------------------------------------------------------------------- redact / scrub

REDACTED = [
    (f"postgresql://derive:{PLAIN}@127.0.0.1:5432/db", "postgresql://derive:***@127.0.0.1:5432/db"),
    (f"postgresql://u:{quote(SPECIAL, safe='')}@h/db", "postgresql://u:***@h/db"),
    (f"postgresql://u:{SPECIAL}@host/db", "postgresql://u:***@host/db"),  # raw '@' and ':' in the password
    (f"mysql://u:{PLAIN}@[::1", "mysql://u:***@[::1"),
    (f"mysql://u:{PLAIN}@[::1]:3306/db", "mysql://u:***@[::1]:3306/db"),
    (f"postgresql://h/db?user=u&password={PLAIN}&sslmode=require", "postgresql://h/db?user=u&password=***&sslmode=require"),
    (f"postgresql://h/db?PASSWORD={PLAIN}", "postgresql://h/db?PASSWORD=***"),
    (f"mongodb://u:{PLAIN}@h1:1,h2:2/?replicaSet=rs", "mongodb://u:***@h1:1,h2:2/?replicaSet=rs"),
    (f"postgresql://:{PLAIN}@h/db", "postgresql://:***@h/db"),
    (f"host=localhost user=x password={PLAIN} dbname=z", "host=localhost user=x password=*** dbname=z"),
    (f"host=h password = '{PLAIN} x' dbname=z", "host=h password = *** dbname=z"),
    ("postgresql://user@h/db", "postgresql://user@h/db"),
    ("sqlite:////tmp/a.db", "sqlite:////tmp/a.db"),
    (PLAIN, "<a value that is not a URL, not shown>"),
    ("", "<a value that is not a URL, not shown>"),
]  # fmt: skip


@pytest.mark.parametrize(("url", "shown"), REDACTED)
def test_redact_hides_the_password_in_every_form(url, shown):
    assert redact(url) == shown


def test_redact_and_scrub_never_raise_and_never_show_the_password():
    rng = random.Random(9)
    alphabet = string.printable.strip() + "[]@:/%?&=#\u00e9\u4e2d\x00"
    checked = 0
    for _ in range(3000):
        password = "".join(rng.choice(alphabet) for _ in range(rng.randint(6, 16)))
        host = "".join(rng.choice(alphabet.replace("@", "")) for _ in range(rng.randint(0, 12)))
        quoted = quote(password, safe="")
        plain = password.replace("'", "").replace("\\", "")
        url, written = rng.choice(
            [
                (f"postgresql://user:{password}@{host}/db", password),  # unencoded: '@', ':', '/' raw
                (f"mysql://user:{quoted}@{host}", quoted),
                (f"postgresql://{host}/db?password={quoted}", quoted),  # raw, an '&' would end the value
                (f"host={host} password={plain} dbname=x", plain),
            ]
        )
        shown = redact(url)
        spellings = {written, unquote(written), quote(unquote(written), safe="")}
        cleaned = scrub(f"driver said: could not log in to {url} with {' and '.join(spellings)}", url)
        assert len(shown) <= SHOWN_CHARS + 30
        assert written not in shown, (url, shown)
        for spelling in spellings:
            assert spelling not in cleaned, (url, cleaned)
        checked += 1
    assert checked == 3000
    assert redact(None) == "<a value that is not a URL, not shown>"  # type: ignore[arg-type]
    assert scrub(None) == "<class 'NoneType'>"  # type: ignore[arg-type]


def test_scrub_removes_every_spelling_of_the_urls_password_from_a_driver_message():
    url = f"postgresql://u:{quote(SPECIAL, safe='')}@h/db"
    message = (
        f"connect {url} failed; password {SPECIAL} / {quote(SPECIAL, safe='')} / {quote_plus(SPECIAL)}; "
        f"also mysql://x:{PLAIN}@other/db and password={PLAIN}&x and password={PLAIN}"
    )
    cleaned = scrub(message, url)
    assert cleaned == (
        "connect postgresql://u:***@h/db failed; password *** / *** / ***; "
        "also mysql://x:***@other/db and password=*** and password=***"
    )
    assert len(scrub("x" * 10_000)) < SHOWN_CHARS + 30


# ------------------------------------------------------------------------------------------- server-free outages


def test_a_missing_sqlite_file_names_the_source_the_variable_and_the_fix(tmp_path):
    with pytest.raises(
        SourceConnectionError,
        match=r"^source 'accounts': sqlite database .*nope\.db does not exist\. Run `derive generate` to create "
        r"the demo databases, or point DERIVE_ACCOUNTS_URL at an existing file",
    ):
        preflight(source("sqlite"), f"sqlite:///{tmp_path / 'nope.db'}", 1.0)


def test_the_resource_puts_its_timeout_into_mongodb_urls_unless_the_url_sets_one(monkeypatch, tmp_path):
    sources = SourceConnections(embedded_dir=str(tmp_path), connect_timeout_seconds=2.5)
    mongo = source("mongodb", "profiles")
    monkeypatch.setenv("DERIVE_PROFILES_URL", f"mongodb://u:{PLAIN}@h:27017")
    assert sources.url_for(mongo) == (
        f"mongodb://u:{PLAIN}@h:27017/?serverSelectionTimeoutMS=2500&connectTimeoutMS=2500"
    )
    monkeypatch.setenv("DERIVE_PROFILES_URL", "mongodb://h/?replicaSet=rs&connectTimeoutMS=700")
    assert (
        sources.url_for(mongo)
        == "mongodb://h/?replicaSet=rs&connectTimeoutMS=700&serverSelectionTimeoutMS=2500"
    )
    monkeypatch.delenv("DERIVE_PROFILES_URL")
    assert sources.url_for(mongo) == f"montydb:///{Path(tmp_path) / 'profiles'}"


def test_an_invalid_mongodb_url_is_a_clear_error_without_the_password():
    with (
        pytest.raises(SourceConnectionError, match=r"^MongoDB URL mongodb://u:\*\*\*@\[::1 is not valid: .*"),
        open_mongo(f"mongodb://u:{PLAIN}@[::1"),
    ):
        pass


def test_a_bad_timeout_is_refused():
    with pytest.raises(ValueError, match="connect_timeout_seconds must be positive"):
        SourceConnections(embedded_dir="x", connect_timeout_seconds=0).checked_url(source("sqlite"))


def test_the_resource_field_is_documented():
    field = SourceConnections.model_fields["connect_timeout_seconds"]
    assert field.default == 10.0
    assert field.description and "refused password fails at once" in field.description
