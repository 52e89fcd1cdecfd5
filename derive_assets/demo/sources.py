"""Which databases the demo's sample data goes to: the ones the replication reads.

Each demo source (`accounts`, `orders`, `payments`, `profiles`) is written through the URL its source spec's
`connection_env` variable holds, as `replication/urls.py` resolves it for the replication, else the embedded
store under `$DERIVE_HOME/sources`; an explicit `--<source>-url` option of `derive generate`/`activity` wins.
The profile documents go to the database the `profiles` spec reads (`database:`, else the source name) unless
the URL names another one in its path; `derive demo` refuses that mismatch, since the replication would then
read an empty collection.

`incomplete_sources` tells a first run (generate everything) from a later one (apply activity): a source
whose tables are missing or empty, wherever it lives, makes the demo generate afresh.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
import sqlalchemy.exc

from derive_assets.demo.connections import (
    SOURCES,
    SourceUrls,
    embedded_urls,
    is_embedded,
    open_profiles,
    sqlalchemy_url,
    url_database,
)
from derive_assets.demo.schema import source_tables
from derive_assets.replication.mongo_client import MONGO_DATABASE
from derive_assets.replication.urls import SourceConnectionError, redact, resolve_url, scrub
from derive_assets.specs.models import SourceSpec
from derive_assets.specs.project import SpecProject


class SampleSourceMismatch(ValueError):
    """The sample data would go where the replication does not read it."""


class SampleSourceUnavailable(RuntimeError):
    """A sample source could not be read or written; the message holds no secret of its URL."""


@contextmanager
def sample_source_errors(
    urls: SourceUrls,
    what: str = "the sample sources could not be read or written",
    fix: str = "Check the sources' connection variables (each source spec's `connection_env`) and that the "
    "servers are up",
) -> Iterator[None]:
    """Driver errors while looking at or writing the sample sources, as one `SampleSourceUnavailable` line,
    `<what>: <the driver's first line>. <fix>`, with every URL's secrets scrubbed (never a traceback)."""
    import pymongo.errors

    try:
        yield
    except (
        sqlalchemy.exc.SQLAlchemyError,
        pymongo.errors.PyMongoError,
        SourceConnectionError,
        OSError,
    ) as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SampleSourceUnavailable(f"{what}: {scrub(text, *urls.every().values())}. {fix}") from None


def sample_urls(
    project: SpecProject, embedded_dir: Path, given: Mapping[str, str | None] | None = None
) -> SourceUrls:
    """The URL of each demo source: `given[source]` when set, else the URL in its spec's `connection_env`
    variable (checked against the spec's `type`, as the replication checks it), else the embedded store under
    `embedded_dir`. The profiles' default database is the one the `profiles` spec reads."""
    given = given or {}
    specs = {source.name: source for source in project.sources()}
    embedded = embedded_urls(embedded_dir).every()
    urls: dict[str, str] = {}
    for source in (*SOURCES, "profiles"):
        spec = specs.get(source)
        urls[source] = given.get(source) or (resolve_url(spec, embedded_dir) if spec else embedded[source])
    profiles = specs.get("profiles")
    return SourceUrls(
        **urls, default_database=profiles.mongo_database if profiles is not None else MONGO_DATABASE
    )


def spec_database_mismatch(project: SpecProject, urls: SourceUrls) -> str | None:
    """Why the replication would not read the profiles `urls` writes (its URL names a database other than the
    one the `profiles` spec reads), or None."""
    spec: SourceSpec | None = next((s for s in project.sources() if s.name == "profiles"), None)
    named = url_database(urls.profiles)
    if spec is None or named is None or named == spec.mongo_database:
        return None
    return (
        f"the profiles URL {redact(urls.profiles)} names the database '{named}', but source 'profiles' reads "
        f"database '{spec.mongo_database}' (its spec's `database:`), so the replication would not see the "
        f"sample documents. Set `database: {named}` in the profiles source spec, or name no database in the "
        f"URL (mongodb://host:port/, with ?authSource={named} if that is where the user logs in)"
    )


def describe(urls: SourceUrls) -> list[str]:
    """One line per source: where its sample data goes, passwords masked."""
    lines = []
    for source, url in urls.every().items():
        where = f" (database {urls.profiles_database})" if source == "profiles" else ""
        lines.append(f"{source}: {redact(url)}{where}")
    return lines


def incomplete_sources(where: Path | SourceUrls) -> list[str]:
    """The demo sources at `where` (the embedded directory, or the URLs of each source) whose tables are
    missing or empty (never generated, an interrupted generation, an emptied file): any of them means the demo
    generates every source afresh. Embedded sources are named by file (`accounts.db`, `profiles`), others by
    source and redacted URL. Nothing is created by looking; a server that cannot be reached raises its
    driver's error."""
    urls = embedded_urls(where) if isinstance(where, Path) else where
    schema = source_tables()
    missing = []
    for source in SOURCES:
        url = getattr(urls, source)
        tables = [table.name for table in schema[source]]
        if not _sql_tables_filled(url, tables):
            missing.append(_label(source, url))
    if not _profiles_filled(urls):
        missing.append(_label("profiles", urls.profiles))
    return missing


def _label(source: str, url: str) -> str:
    parsed = sa.make_url(url) if not url.startswith(("montydb:", "mongodb")) else None
    if parsed is not None and parsed.get_backend_name() == "sqlite":
        return Path(parsed.database or source).name
    if is_embedded(url):
        return Path(url.removeprefix("montydb:///")).name
    return f"{source} at {redact(url)}"


def _sql_tables_filled(url: str, tables: list[str]) -> bool:
    parsed = sa.make_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite and not (parsed.database and Path(parsed.database).is_file()):
        return False  # looking must not create the file (connecting would)
    engine = sa.create_engine(sqlalchemy_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            present = set(sa.inspect(conn).get_table_names())
            return all(
                table in present
                and conn.execute(sa.select(sa.literal(1)).select_from(sa.table(table)).limit(1)).first()
                is not None
                for table in tables
            )
    except sqlalchemy.exc.DatabaseError:
        if sqlite:
            return False  # a file that is not a database: generated afresh
        raise
    finally:
        engine.dispose()


def _profiles_filled(urls: SourceUrls) -> bool:
    if is_embedded(urls.profiles) and not Path(urls.profiles.removeprefix("montydb:///")).is_dir():
        return False  # opening montydb would create the directory
    with open_profiles(urls) as profiles:
        return profiles.find_one({}) is not None
