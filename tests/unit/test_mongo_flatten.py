"""Declared flattening of documents: dot paths, coercion to declared types, drift, quarantine; ObjectId cursors
with their overlap; invalid keys and cursors; edge values that must arrive exactly or be refused by name.

The documents live in montydb (an embedded, pymongo-compatible store) in tmp_path; the same reader runs against
a real Mongo-wire server in tests/integration/test_mongo_replication.py.
"""

import datetime as dt
import json
from decimal import Decimal

import duckdb
import pytest
from bson import DatetimeMS, Decimal128, ObjectId

from derive_assets.replication.mongo import (
    CoercionError,
    CursorValueError,
    ExtractStats,
    mongo_filter,
    overlap_seconds,
    read_mongo_batches,
)
from derive_assets.replication.mongo_client import open_mongo
from derive_assets.specs.models import SourceSpec

SPEC = {
    "kind": "source",
    "name": "profiles",
    "type": "mongodb",
    "connection_env": "DERIVE_PROFILES_URL",
    "owner": "team:accounts",
    "tables": [
        {
            "name": "profile",
            "primary_key": ["user_id"],
            "cursor": "updated_at",
            "columns": [
                {"name": "user_id", "type": "INT64"},
                {"name": "oid", "type": "STRING", "path": "_id"},
                {"name": "timezone", "type": "STRING", "path": "settings.timezone"},
                {"name": "newsletter", "type": "BOOL", "path": "settings.newsletter"},
                {"name": "lifetime_value", "type": "NUMERIC", "path": "stats.lifetime_value"},
                {"name": "tags", "type": "JSON"},
                {"name": "updated_at", "type": "TIMESTAMP"},
            ],
        }
    ],
}
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def source(**table_changes) -> SourceSpec:
    spec = {**SPEC, "tables": [{**SPEC["tables"][0], **table_changes}]}
    return SourceSpec.model_validate(spec)


@pytest.fixture
def url(tmp_path) -> str:
    url = f"montydb:///{tmp_path}/mongo"
    with open_mongo(url) as client:
        client["profiles"]["profile"].insert_many(
            [
                {
                    "_id": ObjectId("6b0836e0b7f02ccc7af5070f"),
                    "user_id": 1,
                    "settings": {"timezone": "Europe/Berlin", "newsletter": True, "theme": "dark"},
                    "stats": {"lifetime_value": "12.5"},
                    "tags": ["beta", "vip"],
                    "updated_at": T0,
                    "referrer": "ads",
                },
                {
                    "user_id": "2",  # a number stored as a string
                    "settings": {"timezone": "Asia/Tokyo"},
                    "stats": {"lifetime_value": 7},
                    "tags": [],
                    "updated_at": T0 + dt.timedelta(hours=1),
                },
            ]
        )
    return url


def read(url: str, spec: SourceSpec, since=None) -> tuple[list[dict], ExtractStats]:
    stats = ExtractStats()
    batches = list(read_mongo_batches(url, spec, spec.tables[0], since, 1000, stats))
    return [row for b in batches for row in b.to_pylist()], stats


def test_paths_are_flattened_and_coerced_to_declared_types(url):
    rows, stats = read(url, source())
    first, second = sorted(rows, key=lambda r: r["user_id"])
    assert first == {
        "user_id": 1,
        "oid": "6b0836e0b7f02ccc7af5070f",
        "timezone": "Europe/Berlin",
        "newsletter": True,
        "lifetime_value": Decimal("12.500000000"),
        "tags": '["beta", "vip"]',
        "updated_at": T0,
    }
    assert second["user_id"] == 2 and second["newsletter"] is None and second["lifetime_value"] == Decimal(7)
    assert stats.documents_read == 2


def test_undeclared_fields_are_counted_as_drift(url):
    _, stats = read(url, source())
    assert stats.undeclared == {"settings.theme": 1, "referrer": 1}


def test_incremental_read_takes_only_documents_beyond_the_watermark(url):
    rows, _ = read(url, source(), since=T0)
    assert [r["user_id"] for r in rows] == [2]


def test_uncoercible_value_fails_with_collection_id_path_value_and_type(url):
    with open_mongo(url) as client:
        client["profiles"]["profile"].insert_one(
            {"_id": "bad-1", "user_id": 3, "stats": {"lifetime_value": "n/a"}, "updated_at": T0}
        )
    with pytest.raises(
        CoercionError,
        match=r"collection profiles\.profile: document _id='bad-1': field 'stats\.lifetime_value' has value "
        r"'n/a', which cannot be read as NUMERIC .*on_invalid: quarantine",
    ):
        read(url, source())


def test_quarantine_sets_bad_documents_aside_and_keeps_the_rest(url):
    with open_mongo(url) as client:
        client["profiles"]["profile"].insert_one({"_id": "bad-2", "user_id": "three", "updated_at": T0})
    rows, stats = read(url, source(on_invalid="quarantine"))
    assert sorted(r["user_id"] for r in rows) == [1, 2]
    [bad] = stats.quarantined
    assert bad["_id"] == "bad-2" and "field 'user_id' has value 'three'" in bad["error"]


def test_object_id_cursor_for_insert_only_collections(url):
    spec = source(cursor="oid", primary_key=["oid"], cursor_overlap=0)
    rows, _ = read(url, spec, since="6b0836e0b7f02ccc7af5070f")
    assert [r["user_id"] for r in rows] == [2]  # the second document's ObjectId was generated later


def test_path_is_only_for_mongodb_sources():
    spec = {**SPEC, "type": "postgres"}
    with pytest.raises(ValueError, match=r"have a `path`, which only MongoDB sources use"):
        SourceSpec.model_validate(spec)


# ------------------------------------------------------------------------------ ObjectId cursors, late arrivals


def object_id(at: dt.datetime, tail: int) -> ObjectId:
    """An ObjectId created at `at` (whole seconds), its other 8 bytes `tail`: as a client would make it."""
    return ObjectId(int(at.timestamp()).to_bytes(4, "big") + tail.to_bytes(8, "big"))


@pytest.fixture
def id_url(tmp_path) -> str:
    """Insert-only events keyed by ObjectId: one made at T0 + 100 s, one at T0 + 200 s."""
    url = f"montydb:///{tmp_path}/ids"
    with open_mongo(url) as client:
        client["profiles"]["profile"].insert_many(
            [
                {"_id": object_id(T0 + dt.timedelta(seconds=s), 1), "user_id": s, "updated_at": T0}
                for s in (100, 200)
            ]
        )
    return url


def id_source(overlap: int | None) -> SourceSpec:
    return source(cursor="oid", primary_key=["oid"], cursor_overlap=overlap)


def late_arrival(url: str) -> str:
    """A document whose ObjectId was made (client-side) at T0 + 150 s, inserted after T0 + 200 s was read."""
    with open_mongo(url) as client:
        client["profiles"]["profile"].insert_one(
            {"_id": object_id(T0 + dt.timedelta(seconds=150), 2), "user_id": 150, "updated_at": T0}
        )
    return str(object_id(T0 + dt.timedelta(seconds=200), 1))


def test_object_id_watermark_as_text_reads_only_later_ids_without_overlap(id_url):
    watermark = late_arrival(id_url)
    rows, _ = read(id_url, id_source(0), since=watermark)
    assert rows == []  # overlap 0: the late document's earlier ObjectId is behind the watermark
    assert mongo_filter(id_source(0).tables[0], watermark) == {"_id": {"$gt": ObjectId(watermark)}}


def test_object_id_overlap_steps_back_by_creation_time_and_catches_late_arrivals(id_url):
    watermark = late_arrival(id_url)
    rows, _ = read(id_url, id_source(60), since=watermark)
    assert sorted(r["user_id"] for r in rows) == [150, 200]  # re-read 200 (merged by key), found 150
    rows, _ = read(id_url, id_source(30), since=watermark)
    assert [r["user_id"] for r in rows] == [200]  # 150 s lies 50 s back: outside a 30 s overlap


def test_object_id_overlap_defaults_to_the_time_overlap_when_the_spec_leaves_it_out(id_url):
    table = id_source(None).tables[0]
    assert overlap_seconds(table) == table.effective_overlap == 600
    watermark = late_arrival(id_url)
    bound = mongo_filter(table, watermark)["_id"]["$gte"]
    assert bound.generation_time == T0 + dt.timedelta(seconds=200 - 600)
    rows, _ = read(id_url, id_source(None), since=watermark)
    assert sorted(r["user_id"] for r in rows) == [100, 150, 200]


def test_object_id_cursor_given_an_already_stepped_back_time_reads_from_it(id_url):
    late_arrival(id_url)
    rows, _ = read(id_url, id_source(0), since=T0 + dt.timedelta(seconds=150))
    assert sorted(r["user_id"] for r in rows) == [150, 200]


def test_object_id_overlap_before_1970_clamps_to_the_first_object_id(id_url):
    table = id_source(315_360_000).tables[0]  # ten years, the largest overlap a spec accepts
    watermark = object_id(dt.datetime(1971, 1, 1, tzinfo=dt.UTC), 1)
    assert mongo_filter(table, str(watermark)) == {"_id": {"$gte": ObjectId("0" * 24)}}


def test_stored_object_id_watermark_that_is_not_an_object_id_fails_clearly():
    with pytest.raises(
        CursorValueError, match=r"watermark '2026-01-01' of the `_id` cursor 'oid' is not an ObjectId"
    ):
        mongo_filter(id_source(0).tables[0], "2026-01-01")


def test_id_cursor_refuses_documents_whose_id_is_not_an_object_id(id_url):
    with open_mongo(id_url) as client:
        client["profiles"]["profile"].insert_one({"_id": "zzz-custom", "user_id": 7, "updated_at": T0})
    with pytest.raises(
        CoercionError,
        match=r"_id='zzz-custom': cursor field '_id' has value 'zzz-custom', which is not an ObjectId",
    ):
        read(id_url, id_source(0))
    rows, stats = read(id_url, source(cursor="oid", primary_key=["oid"], on_invalid="quarantine"))
    assert sorted(r["user_id"] for r in rows) == [100, 200]
    assert [q["_id"] for q in stats.quarantined] == ["zzz-custom"]


def test_far_future_object_id_is_invalid_and_never_read_as_a_row(id_url):
    with open_mongo(id_url) as client:
        client["profiles"]["profile"].insert_one(
            {"_id": ObjectId("ffffffff0000000000000000"), "user_id": 9, "updated_at": T0}
        )
    with pytest.raises(
        CoercionError, match=r"cursor field '_id' .* more than max_future_seconds \(86400 s\)"
    ):
        read(id_url, id_source(0))


# ------------------------------------------------------------------------------ keys and cursors


def test_missing_key_null_cursor_and_future_cursor_are_counted_and_sampled(url):
    with open_mongo(url) as client:
        client["profiles"]["profile"].insert_many(
            [
                {"_id": "no-key", "updated_at": T0},
                {"_id": "null-cursor", "user_id": 4, "updated_at": None},
                {"_id": "future", "user_id": 5, "updated_at": dt.datetime(9999, 12, 31)},
            ]
        )
    with pytest.raises(CoercionError) as raised:
        read(url, source())
    message = str(raised.value)
    assert message.startswith("collection profiles.profile: 3 documents cannot be loaded (first 3: ")
    assert "_id='no-key': primary key field 'user_id' is missing or null" in message
    assert "_id='null-cursor': cursor field 'updated_at' is missing or null" in message
    assert "_id='future': cursor field 'updated_at' has value datetime.datetime(9999, 12, 31" in message
    assert message.endswith("set such documents aside. Nothing was written.")
    rows, stats = read(url, source(on_invalid="quarantine"))
    assert sorted(r["user_id"] for r in rows) == [1, 2]
    assert sorted(q["_id"] for q in stats.quarantined) == ["future", "no-key", "null-cursor"]


def test_future_bound_follows_max_future_seconds(url):
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    with open_mongo(url) as client:
        client["profiles"]["profile"].insert_one({"_id": "soon", "user_id": 6, "updated_at": soon})
    with pytest.raises(CoercionError, match=r"more than max_future_seconds \(3600 s\)"):
        read(url, source(max_future_seconds=3600))
    rows, _ = read(url, source())  # the default bound (a day) admits a clock two hours ahead
    assert sorted(r["user_id"] for r in rows) == [1, 2, 6]


# ------------------------------------------------------------------------------ adversarial values (montydb)

EDGE_SPEC = {
    "name": "edge",
    "primary_key": ["k"],
    "cursor": "k",
    "columns": [
        {"name": "k", "type": "INT64"},
        {"name": "s", "type": "STRING"},
        {"name": "i", "type": "INT64"},
        {"name": "f", "type": "FLOAT64"},
        {"name": "n", "type": "NUMERIC"},
        {"name": "ts", "type": "TIMESTAMP"},
        {"name": "d", "type": "DATE"},
        {"name": "b", "type": "BYTES"},
        {"name": "j", "type": "JSON"},
    ],
}
LONG = "ø" * 1_000_000
UNICODE = "e\u0301 \U0001f600\u200d\U0001f469 \u05e9\u05dc\u05d5\u05dd \u202e\x01\x1f\x7f\t\n\r"
MAX_NUMERIC = Decimal("99999999999999999999999999999.999999999")
DECIMAL128_EDGE = "-9999999999999999999999999.999999999"
"""34 digits: the most a Decimal128 holds."""
EDGE_DOCUMENTS = [
    {"k": 1, "s": LONG, "i": 2**63 - 1, "f": float("nan"), "n": "0.000000001", "b": b""},
    {"k": 2, "s": UNICODE, "i": -(2**63), "f": float("inf"), "n": str(MAX_NUMERIC), "b": b"\x00\xff"},
    {
        "k": 3,
        "s": "",
        "i": 0,
        "f": float("-inf"),
        "n": Decimal128(DECIMAL128_EDGE),
        "j": {"u": UNICODE},
    },
    {"k": 4, "s": None, "f": -0.0, "ts": dt.datetime(1, 1, 1), "d": "0001-01-01"},
    {"k": 5, "ts": dt.datetime(1969, 12, 31, 23, 59, 59, 999000), "d": dt.datetime(1969, 12, 31)},
    {"k": 6, "ts": dt.datetime(9999, 12, 31, 23, 59, 59, 999000), "d": "9999-12-31", "j": [1, 2**62]},
    {"k": 7, "i": "-9223372036854775808", "f": "-1.5e-3", "n": "+.5"},
]
EDGE_EXPECTED = [
    (1, LONG, 2**63 - 1, "nan", Decimal("0.000000001"), None, None, b"", None),
    (2, UNICODE, -(2**63), "inf", MAX_NUMERIC, None, None, b"\x00\xff", None),
    (3, "", 0, "-inf", Decimal(DECIMAL128_EDGE), None, None, None, json.dumps({"u": UNICODE})),
    (4, None, None, "-0.0", None, dt.datetime(1, 1, 1, tzinfo=dt.UTC), dt.date(1, 1, 1), None, None),
    (5, None, None, None, None, dt.datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=dt.UTC), dt.date(1969, 12, 31), None, None),
    (6, None, None, None, None, dt.datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=dt.UTC), dt.date(9999, 12, 31), None, "[1, 4611686018427387904]"),
    (7, None, -(2**63), "-0.0015", Decimal("0.5"), None, None, None, None),
]  # fmt: skip
"""Floats as repr() (NaN never equals itself); -0.0 keeps its sign."""


def edge_source(**changes) -> SourceSpec:
    return SourceSpec.model_validate({**SPEC, "tables": [{**EDGE_SPEC, **changes}]})


@pytest.fixture
def edge_url(tmp_path) -> str:
    url = f"montydb:///{tmp_path}/edge"
    with open_mongo(url) as client:
        client["profiles"]["edge"].insert_many([dict(d) for d in EDGE_DOCUMENTS])
    return url


def test_edge_values_arrive_exactly(edge_url):
    rows, _ = read(edge_url, edge_source())
    got = [
        tuple(repr(v) if isinstance(v, float) else v for v in row.values())
        for row in sorted(rows, key=lambda r: r["k"])
    ]
    assert got == EDGE_EXPECTED


UNREPRESENTABLE = [
    (
        "n",
        "0.0000000001",
        "NUMERIC",
        r"more than 9 digits after the point, which NUMERIC \(38, 9\) would round",
    ),
    ("n", "1e30", "NUMERIC", r"more than 29 digits before the point"),
    ("n", Decimal128("NaN"), "NUMERIC", r"not a finite number"),
    ("n", float("inf"), "NUMERIC", r"not a finite number"),
    ("i", "9223372036854775808", "INT64", r"outside the INT64 range"),
    ("i", 1e19, "INT64", r"outside the INT64 range"),
    ("i", float("nan"), "INT64", r"not a finite number"),
    ("i", "1_000", "INT64", r"not a number written with ASCII digits"),
    ("i", "\u0661\u0662\u0663", "INT64", r"not a number written with ASCII digits"),  # Arabic-Indic 123
    ("i", " 12", "INT64", r"not a number written with ASCII digits"),
    ("n", "1_0.5", "NUMERIC", r"not a number written with ASCII digits"),
    ("f", "\u0661.\u0665", "FLOAT64", r"not a number written with ASCII digits"),
    ("f", 2**53 + 1, "FLOAT64", r"an integer beyond 2\^53"),
    ("s", b"\x00", "STRING", r"binary data; declare the column as BYTES"),
    ("ts", DatetimeMS(2**62), "TIMESTAMP", r"a date outside the years 1-9999"),
    ("d", "2026-11-30T10:00:00", "DATE", r"has a time of day"),
    ("j", {"x": float("nan")}, "JSON", r"holds NaN or infinity"),
    ("j", {"x": b"\x01"}, "JSON", r"binary data inside a JSON value"),
]


@pytest.mark.parametrize(("column", "value", "kind", "reason"), UNREPRESENTABLE)
def test_unrepresentable_value_fails_naming_the_field_never_changed(tmp_path, column, value, kind, reason):
    url = f"montydb:///{tmp_path}/bad"
    with open_mongo(url) as client:
        client["profiles"]["edge"].insert_many([{"_id": "ok", "k": 1}, {"_id": "bad", "k": 2, column: value}])
    with pytest.raises(
        CoercionError,
        match=rf"document _id='bad': field '{column}' has value .*, which cannot be read as {kind} \({reason}",
    ):
        read(url, edge_source())
    rows, stats = read(url, edge_source(on_invalid="quarantine"))
    assert [r["k"] for r in rows] == [1] and [q["_id"] for q in stats.quarantined] == ["bad"]


def test_batches_are_cut_by_size_as_well_as_by_rows(tmp_path, monkeypatch):
    url = f"montydb:///{tmp_path}/big"
    with open_mongo(url) as client:
        client["profiles"]["edge"].insert_many([{"k": k, "s": "x" * 1000} for k in range(10)])
    monkeypatch.setattr("derive_assets.replication.mongo.BATCH_BYTES", 2500)
    spec = edge_source()
    batches = list(read_mongo_batches(url, spec, spec.tables[0], None, 1000, ExtractStats()))
    assert [b.num_rows for b in batches] == [3, 3, 3, 1]


def test_object_id_watermark_round_trips_through_the_event_log_embedded(tmp_path, monkeypatch):
    """Server-free: three Dagster runs on montydb; the stored ObjectId watermark is read back by each next run."""
    import yaml
    from dagster import AssetKey, DagsterInstance

    from derive_assets.factory.build import build_definitions
    from derive_assets.settings import DeriveSettings

    url = f"montydb:///{tmp_path}/events"
    monkeypatch.setenv("DERIVE_UNIT_EVENTS_URL", url)
    specs = tmp_path / "table_specs"
    (specs / "sources").mkdir(parents=True)
    table = {
        "name": "events",
        "primary_key": ["event_id"],
        "cursor": "event_id",
        "cursor_overlap": 60,
        "columns": [{"name": "event_id", "type": "STRING", "path": "_id"}, {"name": "n", "type": "INT64"}],
    }
    spec = {**SPEC, "name": "events", "connection_env": "DERIVE_UNIT_EVENTS_URL", "tables": [table]}
    (specs / "sources" / "events.yaml").write_text(yaml.safe_dump(spec))
    settings = DeriveSettings(specs_dir=specs, home=tmp_path / "home")
    defs, instance = build_definitions(settings), DagsterInstance.ephemeral()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)

    def insert(n: int, seconds_ago: int) -> None:
        with open_mongo(url) as client:
            client["events"]["events"].insert_one(
                {"_id": object_id(now - dt.timedelta(seconds=seconds_ago), n), "n": n}
            )

    def run() -> tuple[str, int]:
        result = defs.resolve_job_def("replicate_events").execute_in_process(
            instance=instance, raise_on_error=False
        )
        assert result.success
        event = instance.get_latest_materialization_event(AssetKey(["events", "events"]))
        assert event is not None and event.asset_materialization is not None
        with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
            count = con.execute("SELECT count(*) FROM events.events").fetchone()
        return event.asset_materialization.metadata["derive/watermark"].value, count[0] if count else 0  # type: ignore[union-attr]

    insert(1, 300)
    insert(2, 200)
    assert run() == (str(object_id(now - dt.timedelta(seconds=200), 2)), 2)
    insert(3, 230)  # made before the watermark's ObjectId, inserted after it was read
    assert run() == (str(object_id(now - dt.timedelta(seconds=200), 2)), 3)
    insert(4, 10)
    assert run() == (str(object_id(now - dt.timedelta(seconds=10), 4)), 4)


def test_dates_in_string_and_json_columns_are_spelled_as_utc(tmp_path):
    url = f"montydb:///{tmp_path}/dates"
    with open_mongo(url) as client:
        client["profiles"]["edge"].insert_one({"k": 1, "s": T0, "j": {"at": T0}})
    rows, _ = read(url, edge_source())
    assert rows[0]["s"] == "2026-01-01T00:00:00+00:00"
    assert json.loads(rows[0]["j"]) == {"at": "2026-01-01T00:00:00+00:00"}


@pytest.mark.parametrize(
    ("settings", "kind"), [([{"timezone": "UTC"}], "an array"), ("dark", "a str"), (7, "a int")]
)
def test_path_through_an_array_or_a_plain_value_is_refused_not_read_as_null(url, settings, kind):
    with open_mongo(url) as client:
        client["profiles"]["profile"].insert_one(
            {"_id": "odd", "user_id": 9, "settings": settings, "updated_at": T0}
        )
    with pytest.raises(
        CoercionError,
        match=rf"_id='odd': field 'settings.timezone' cannot be read: 'settings' is {kind}, not a sub-document",
    ):
        read(url, source())


def test_missing_or_null_parents_read_as_null(url):
    with open_mongo(url) as client:
        client["profiles"]["profile"].insert_one({"user_id": 8, "settings": None, "updated_at": T0})
    rows, _ = read(url, source())
    assert [(r["timezone"], r["newsletter"]) for r in rows if r["user_id"] == 8] == [(None, None)]
