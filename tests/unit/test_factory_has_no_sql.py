"""The factory describes reads and checks as data (`resources.reads`); engines render the SQL. So no module under
`derive_assets/factory/` (nor `derive_assets/plan.py`) may name an engine in code, branch on a dialect, write a
parameter prefix, hold SQL text, or import `resources.sql_text`. Docstrings and comments may name engines."""

import ast
import itertools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = [*sorted((ROOT / "derive_assets" / "factory").glob("*.py")), ROOT / "derive_assets" / "plan.py"]

ENGINE = re.compile(r"\b(duckdb|bigquery|sqlite|cassandra)\b", re.IGNORECASE)
SQL = re.compile(
    r"\b(SELECT|INSERT|DELETE|MERGE|UPDATE|WHERE)\b|\bselect\b.*\bfrom\b", re.IGNORECASE | re.DOTALL
)
PARAMETER = re.compile(r"^[$@]$|[$@][A-Za-z_]\w*")
BRANCH_ATTRIBUTES = {"dialect", "kind"}


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
        # an attribute docstring: a string statement right after an assignment
        for field in ("body", "orelse"):
            stmts = getattr(node, field, None)
            if isinstance(stmts, list):
                for before, stmt in itertools.pairwise(stmts):
                    if (
                        isinstance(before, ast.Assign | ast.AnnAssign)
                        and isinstance(stmt, ast.Expr)
                        and isinstance(stmt.value, ast.Constant)
                    ):
                        found.add(id(stmt.value))
    return found


def _branches_on(node: ast.expr) -> str | None:
    if isinstance(node, ast.Attribute) and node.attr in BRANCH_ATTRIBUTES:
        return node.attr
    if isinstance(node, ast.Name) and node.id in BRANCH_ATTRIBUTES:
        return node.id
    return None


def _imports_sql_text(node: ast.AST) -> bool:
    if isinstance(node, ast.ImportFrom):
        module = node.module or ""
        return module.startswith("resources.sql_text") or (
            module == "resources" and any(a.name == "sql_text" for a in node.names)
        )
    return isinstance(node, ast.Import) and any(a.name.startswith("resources.sql_text") for a in node.names)


def problems(source: str, name: str = "<source>") -> list[str]:
    """Every line of `source` that writes SQL or knows an engine, as `name:line: why`."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        where = f"{name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            text = node.value
            for pattern, why in (
                (ENGINE, "names an engine"),
                (SQL, "holds SQL"),
                (PARAMETER, "a parameter prefix"),
            ):
                if pattern.search(text):
                    found.append(f"{where}: {why}: {text!r}")
        elif isinstance(node, ast.Compare):
            for operand in (node.left, *node.comparators):
                attr = _branches_on(operand)
                if attr:
                    found.append(f"{where}: branches on `{attr}`")
        elif _imports_sql_text(node):
            found.append(f"{where}: imports resources.sql_text")
    return found


def test_the_factory_writes_no_sql_and_names_no_engine():
    assert len(SCANNED) > 5  # the glob found the factory
    found = [p for path in SCANNED for p in problems(path.read_text(), str(path.relative_to(ROOT)))]
    assert found == [], "\n".join(found)


@pytest.mark.parametrize(
    ("snippet", "why"),
    [
        ('p = "$" if dialect == "duckdb" else "@"', "names an engine"),
        ("if warehouse.dialect == d:\n    pass", "branches on `dialect`"),
        ("x = warehouse.kind != 'x'", "branches on `kind`"),
        ('sql = f"SELECT count(*) FROM {t} WHERE {c} IS NULL"', "holds SQL"),
        ('where = f"{col} > @after"', "a parameter prefix"),
        ('where = col + " <= $upto"', "a parameter prefix"),
        ("from resources.sql_text import quote", "imports resources.sql_text"),
        ("import resources.sql_text", "imports resources.sql_text"),
        ("from resources import sql_text", "imports resources.sql_text"),
        ('kinds = {"BigQuery"}', "names an engine"),
    ],
)
def test_the_scanner_flags(snippet, why):
    assert any(why in p for p in problems(snippet)), problems(snippet)


def test_the_scanner_allows_docstrings_and_plain_text():
    source = '''"""Rendered by DuckDB or BigQuery; SELECT lives in resources."""
X = 1
"""An attribute docstring naming DuckDB."""


def f(store):
    """A BigQuery dry run."""
    return f"{store.kind}: table t was selected by key"  # comments may say SELECT
'''
    assert problems(source) == []
