"""Apply deliberate bugs one at a time and check the tests notice each (a small mutation test; not in `make test`).

Each mutant replaces one exact snippet in one file (the snippet must occur exactly once, so a mutant never
silently applies to nothing or to the wrong place), runs its test selection with pytest, records whether the
tests failed (killed) or passed (survived), and restores the file from its original text - always: after a
failure, on Ctrl-C and on SIGTERM. If the file changed meanwhile (someone else edited it while the tests ran),
it is left alone and the script stops, so a restore never overwrites another person's work.

    eval "$(bash deployments/local/services.sh env)"   # the BigQuery and Cassandra halves of the contract suite
    .venv/bin/python scripts/mutants.py                # every mutant
    .venv/bin/python scripts/mutants.py --list
    .venv/bin/python scripts/mutants.py merge-first-key ttl-purge-live   # some of them
    .venv/bin/python scripts/mutants.py --baseline     # first check each selection passes unmutated
    .venv/bin/python scripts/mutants.py --check        # only check every snippet is there exactly once

Exit status: 0 when every mutant selected was killed, 1 when one survived, 2 when one could not be applied.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parents[1]
PYTEST = [str(ROOT / ".venv" / "bin" / "pytest"), "-p", "no:cacheprovider", "-x", "-q", "--no-header", "-rfE"]
SERVER_VARIABLES = ("DERIVE_TEST_BIGQUERY_ENDPOINT", "DERIVE_TEST_CASSANDRA_HOSTS")

C = "tests/contract/"
WRITE = C + "test_warehouse_write_contract.py"
LOAD = C + "test_warehouse_load_contract.py"
ROWS = C + "test_warehouse_rows_contract.py"
READS = C + "test_warehouse_reads_contract.py"
ONLINE = C + "test_online_store_contract.py"
REBUILD = C + "test_warehouse_rebuild_contract.py"
DELETE_MISSING = C + "test_warehouse_delete_missing_contract.py"
BQ = "tests/integration/test_bigquery_warehouse.py"
EVOLUTION = C + "test_warehouse_evolution_contract.py"


@dataclass(frozen=True)
class Mutant:
    name: str
    bug: str
    path: str
    find: str
    replace: str
    tests: tuple[str, ...]


MUTANTS = [
    # ---------------------------------------------------------------------------------- the strategy layer
    Mutant(
        "merge-no-window",
        "a merge delete without the window filter",
        "resources/strategy.py",
        "    window, params = _window(s, request)\n    on = q.and_(q.key_match(request.unique_key), window)",
        "    window, params = None, {}\n    on = q.and_(q.key_match(request.unique_key), window)",
        (
            WRITE,
            ROWS,
            BQ
            + "::test_a_windowed_merge_restricts_the_target_to_its_window_when_the_key_holds_the_partition_key",
        ),
    ),
    Mutant(
        "merge-first-key",
        "a merge delete matching only the first unique_key column",
        "resources/strategy.py",
        "on = q.and_(q.key_match(request.unique_key), window)",
        "on = q.and_(q.key_match(request.unique_key[:1]), window)",
        (WRITE, ROWS),
    ),
    Mutant(
        "load-duplicates-accepted",
        "duplicates in one extraction accepted (the load keeps one staged version of a key, or all on a first load)",
        "resources/strategy.py",
        '    refuse_duplicates(target.ref, keys, found, "primary_key")\n',
        "",
        (LOAD,),
    ),
    Mutant(
        "max-cursor-min",
        "max_cursor taken with min()",
        "resources/strategy.py",
        "exp.Max(this=q.col(request.cursor)),",
        "exp.Min(this=q.col(request.cursor)),",
        (LOAD,),
    ),
    Mutant(
        "insert-unordered",
        "inserts without the cluster order",
        "resources/strategy.py",
        "order = target.cluster if caps.cluster_by_insert_order else ()",
        "order = ()",
        (WRITE, LOAD, ROWS),
    ),
    Mutant(
        "inserted-counts-updated",
        "rows_inserted counting updated rows",
        "resources/strategy.py",
        "result.rows_inserted = result.rows_read - result.rows_updated",
        "result.rows_inserted = result.rows_read",
        (WRITE, ROWS),
    ),
    Mutant(
        "load-inserted-counts-updated",
        "rows_inserted of a later load counting updated rows",
        "resources/strategy.py",
        "result.rows_inserted = kept - result.rows_updated",
        "result.rows_inserted = kept",
        (LOAD,),
    ),
    Mutant(
        "first-load-ignores-soft-deletes",
        "first-load counts ignoring soft-deleted rows",
        "resources/strategy.py",
        "result.rows_inserted = result.rows_read - flagged",
        "result.rows_inserted = result.rows_read",
        (LOAD,),
    ),
    Mutant(
        "delete-missing-whole-table",
        "delete_missing deleting missing keys outside the run's window too",
        "resources/strategy.py",
        "    return window if window is not None else exp.true()\n",
        "    return exp.true()\n",
        (DELETE_MISSING,),
    ),
    Mutant(
        "delete-missing-first-key",
        "delete_missing matching only the first unique_key column",
        "resources/engine_sql.py",
        ".where(key_match(keys))\n    return exp.Not(this=exp.Exists",
        ".where(key_match(keys[:1]))\n    return exp.Not(this=exp.Exists",
        (DELETE_MISSING,),
    ),
    Mutant(
        "rebuild-keeps-new-table",
        "a failed rebuild leaving its new table behind",
        "resources/rebuild.py",
        "            s.discard(fresh)\n            raise\n",
        "            raise\n",
        (REBUILD,),
    ),
    Mutant(
        "rebuild-without-swap",
        "a rebuild that fills the new table but never swaps it in",
        "resources/rebuild.py",
        "            result.rows_deleted = s.swap(fresh, target)\n",
        "            result.rows_deleted = 0\n",
        (REBUILD,),
    ),
    Mutant(
        "partition-boundary-off-by-one",
        "a bucket on a window's first instant counted in the window before",
        "resources/partition_counts.py",
        "bisect.bisect_right(starts, at) - 1",
        "bisect.bisect_left(starts, at) - 1",
        (WRITE,),
    ),
    # ---------------------------------------------------------------------------------- reads, checks, exports
    Mutant(
        "unique-needs-three",
        "a `unique` check that flags only values seen three or more times",
        "resources/reads.py",
        ".having(exp.GT(this=_count_all(), expression=exp.Literal.number(1)))",
        ".having(exp.GT(this=_count_all(), expression=exp.Literal.number(2)))",
        (READS,),
    ),
    Mutant(
        "export-whole-table",
        "a windowed export writing the whole table",
        "derive_assets/factory/export_assets.py",
        "rows = TableSlice(spec.table, columns, window=WindowBound(export.partition_key, key_type, window))",
        "rows = TableSlice(spec.table, columns)",
        (
            "tests/embedded/test_export.py::test_window_export_writes_its_window_only_readable_by_key_and_idempotent",
        ),
    ),
    Mutant(
        "export-keys-optional",
        "export key columns not required to be exported",
        "derive_assets/specs/models.py",
        "missing = [k for k in keys if k not in self.columns]",
        "missing = []",
        ("tests/unit/test_malformed_specs.py",),
    ),
    Mutant(
        "verify-ignores-values",
        "the export verification ignoring values that differ",
        "derive_assets/factory/export_verify.py",
        "passed = written == expected and missing == 0 and different == 0",
        "passed = written == expected and missing == 0",
        (
            "tests/embedded/test_export_verification.py",
            "tests/integration/test_cassandra_export.py::test_one_value_changed_in_cassandra_fails_the_check",
        ),
    ),
    # ---------------------------------------------------------------------------------- online stores
    Mutant(
        "sqlite-columns-reordered",
        "an online-store write (SQLite) whose values are in a different order than its INSERT's columns",
        "resources/sqlite_online_store.py",
        'cols = ", ".join(f\'"{n}"\' for n in [*names, EXPIRES])',
        'cols = ", ".join(f\'"{n}"\' for n in [*reversed(names), EXPIRES])',
        (ONLINE + "::test_every_type_is_read_back_by_key_as_written",),
    ),
    Mutant(
        "cassandra-columns-reordered",
        "an online-store write (Cassandra) whose values are in a different order than its INSERT's columns",
        "resources/cassandra_online_store.py",
        "f\"INSERT INTO {_ref(table)} ({', '.join(_q(n) for n in names)}) \"",
        "f\"INSERT INTO {_ref(table)} ({', '.join(_q(n) for n in reversed(names))}) \"",
        (ONLINE + "::test_every_type_is_read_back_by_key_as_written",),
    ),
    Mutant(
        "ttl-purge-live",
        "a TTL purge that deletes live rows instead of expired ones",
        "resources/sqlite_online_store.py",
        'WHERE "{EXPIRES}" < ?\', [time.time()])',
        'WHERE "{EXPIRES}" >= ?\', [time.time()])',
        (ONLINE,),
    ),
    Mutant(
        "sqlite-null-keys-accepted",
        "an online store (SQLite) keeping a row with a NULL key",
        "resources/sqlite_online_store.py",
        "                _refuse_null_keys(table, columns, result.rows_written)\n",
        "",
        (ONLINE,),
    ),
    # ---------------------------------------------------------------------------------- schema evolution
    Mutant(
        "breaking-change-written",
        "a run that goes on writing despite a breaking schema change",
        "resources/evolution.py",
        "    if found.breaking:\n",
        "    if False:\n",
        (EVOLUTION,),
    ),
    Mutant(
        "evolve-before-checks",
        "BigQuery altering the table before the row checks passed (a refused run would leave it altered)",
        "resources/evolution.py",
        "caps.transactional_session != before_rows",
        "caps.transactional_session == before_rows",
        (EVOLUTION,),
    ),
    Mutant(
        "narrowing-is-widening",
        "NUMERIC -> INT64 treated as a safe widening",
        "resources/schema_diff.py",
        '{("INT64", "NUMERIC"), ',
        '{("NUMERIC", "INT64"), ("INT64", "NUMERIC"), ',
        (EVOLUTION, "tests/unit/test_schema_diff.py"),
    ),
    Mutant(
        "drop-unmarked-table",
        "drop_table dropping a table Derive did not create",
        "resources/evolution.py",
        "    if existing.layout is None:\n        raise WarehouseError(",
        "    if False:\n        raise WarehouseError(",
        (EVOLUTION,),
    ),
]


@dataclass
class Outcome:
    mutant: Mutant
    status: str  # killed | survived | not applied | baseline fails
    seconds: float
    detail: str = ""


class Interrupted(Exception):
    """SIGTERM, turned into an exception so the `finally` that restores the file runs."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(f"signal {signum}")


def services_env() -> dict[str, str]:
    """The environment with the test servers' variables (from `services.sh env` when they are not set)."""
    env = dict(os.environ)
    if all(env.get(v) for v in SERVER_VARIABLES):
        return env
    script = ROOT / "deployments" / "local" / "services.sh"
    printed = subprocess.run(
        ["bash", str(script), "env"], capture_output=True, text=True, check=False, cwd=ROOT
    ).stdout
    for line in printed.splitlines():
        words = shlex.split(line.removeprefix("export "))
        if len(words) == 1 and "=" in words[0]:
            name, value = words[0].split("=", 1)
            env.setdefault(name, value)
    missing = [v for v in SERVER_VARIABLES if not env.get(v)]
    if missing:
        sys.exit(
            f"{', '.join(missing)} not set: start the servers (`make services`) so the server halves of the "
            "contract suite run; a skipped half would let mutants survive unseen"
        )
    return env


def run_tests(tests: tuple[str, ...], env: dict[str, str]) -> tuple[int, str]:
    done = subprocess.run([*PYTEST, *tests], capture_output=True, text=True, check=False, cwd=ROOT, env=env)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    failed = [line.split(" - ")[0] for line in lines if line.startswith(("FAILED ", "ERROR "))]
    summary = lines[-1] if lines else done.stderr.strip()[-200:]
    return done.returncode, "; ".join([summary, *failed[:1]])


def apply_and_test(mutant: Mutant, env: dict[str, str]) -> Outcome:
    path = ROOT / mutant.path
    started = time.monotonic()
    original = path.read_text(encoding="utf-8")
    found = original.count(mutant.find)
    if found != 1:
        return Outcome(
            mutant, "not applied", 0.0, f"snippet found {found} times in {mutant.path}, expected 1"
        )
    mutated = original.replace(mutant.find, mutant.replace)
    path.write_text(mutated, encoding="utf-8")
    try:
        code, summary = run_tests(mutant.tests, env)
    finally:
        if path.read_text(encoding="utf-8") != mutated:
            sys.exit(f"{mutant.path} changed while the tests ran: left as it is now; check it by hand")
        path.write_text(original, encoding="utf-8")
    seconds = time.monotonic() - started
    if code == 0:
        return Outcome(mutant, "survived", seconds, summary)
    if code in (1, 2):  # tests failed, or collection failed (an import error is noticed too)
        return Outcome(mutant, "killed", seconds, summary)
    return Outcome(mutant, "not applied", seconds, f"pytest exit {code}: {summary}")


def baseline(mutants: list[Mutant], env: dict[str, str]) -> list[Outcome]:
    """Run each distinct selection unmutated: a selection that fails already would 'kill' every mutant."""
    failing = []
    for tests in dict.fromkeys(m.tests for m in mutants):
        code, summary = run_tests(tests, env)
        if code != 0:
            failing.extend(Outcome(m, "baseline fails", 0.0, summary) for m in mutants if m.tests == tests)
    return failing


def table(outcomes: list[Outcome]) -> str:
    width = max(len(o.mutant.name) for o in outcomes)
    lines = [f"{'mutant':<{width}}  {'result':<14} {'s':>5}  bug / tests", "-" * (width + 80)]
    for o in outcomes:
        lines.append(f"{o.mutant.name:<{width}}  {o.status:<14} {o.seconds:5.0f}  {o.mutant.bug}")
        lines.append(f"{'':<{width}}  {'':<14} {'':>5}  {o.detail}")
    killed = sum(o.status == "killed" for o in outcomes)
    lines.append(f"killed {killed} of {len(outcomes)} ({killed / len(outcomes):.0%})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--baseline", action="store_true", help="first run each selection unmutated")
    parser.add_argument("--check", action="store_true", help="only check each snippet occurs exactly once")
    args = parser.parse_args(argv)
    by_name = {m.name: m for m in MUTANTS}
    if args.list:
        for m in MUTANTS:
            print(f"{m.name:<32} {m.path}: {m.bug}")
        return 0
    unknown = [n for n in args.names if n not in by_name]
    if unknown:
        parser.error(f"unknown mutants {unknown}; --list shows them")
    chosen = [by_name[n] for n in args.names] if args.names else MUTANTS
    if args.check:
        counts = {m.name: (ROOT / m.path).read_text(encoding="utf-8").count(m.find) for m in chosen}
        for name, count in counts.items():
            print(f"{name:<32} {'ok' if count == 1 else f'found {count} times'}")
        return 0 if all(c == 1 for c in counts.values()) else 2
    env = services_env()
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored
    if args.baseline:
        failing = baseline(chosen, env)
        if failing:
            print(table(failing))
            return 2
    outcomes = []
    try:
        for mutant in chosen:
            outcome = apply_and_test(mutant, env)
            print(f"{outcome.mutant.name}: {outcome.status} ({outcome.detail})", flush=True)
            outcomes.append(outcome)
    except (KeyboardInterrupt, Interrupted):
        print("interrupted; the file under mutation was restored", file=sys.stderr)
        if not outcomes:
            return 130
    print()
    print(table(outcomes))
    if any(o.status == "not applied" for o in outcomes):
        return 2
    return 0 if all(o.status == "killed" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
