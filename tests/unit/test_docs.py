"""The committed spec reference and JSON Schema are exactly what the models generate: docs cannot drift."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from derive_assets import docs_gen
from derive_assets.specs.models import SourceSpec, TableSpec

STALE = (
    f"is out of date with derive_assets/specs/models.py; run `{docs_gen.REGENERATE}` and commit the result"
)


@pytest.mark.parametrize(
    ("path", "render"),
    [(docs_gen.REFERENCE_PATH, docs_gen.render_reference), (docs_gen.SCHEMA_PATH, docs_gen.render_schema)],
    ids=["spec-reference.md", "spec.schema.json"],
)
def test_committed_docs_are_generated(path: Path, render) -> None:
    assert path.exists(), f"{path.name} is missing; run `{docs_gen.REGENERATE}`"
    assert path.read_text() == render(), f"docs/{path.name} {STALE}"


def test_reference_documents_every_field() -> None:
    text = docs_gen.render_reference()
    for model, _, _ in docs_gen.SECTIONS:
        assert f"## {model.__name__}\n" in text
        for name, field in model.model_fields.items():
            assert f"| `{name}` |" in text, f"{model.__name__}.{name} is not documented"
            assert field.description, f"{model.__name__}.{name} has no docstring to document it with"
    assert "| `STRING` | `VARCHAR` |" in text and "| `BYTES` | `BLOB` |" in text
    assert "`1h`, `1d`, `1w`, `1mo`" in text
    assert "# yaml-language-server: $schema=" in text


def test_schema_describes_both_kinds() -> None:
    schema = json.loads(docs_gen.render_schema())
    assert {"TableSpec", "SourceSpec", "Column", "Window", "Partition"} <= set(schema["$defs"])
    table = schema["$defs"]["TableSpec"]
    assert table["additionalProperties"] is False
    assert set(table["properties"]) == set(TableSpec.model_fields)
    assert set(schema["$defs"]["SourceSpec"]["properties"]) == set(SourceSpec.model_fields)
    assert {"type": "string", "enum": ["append", "replace"]} in table["properties"]["strategy"]["anyOf"]


def test_write_reference_reports_changes(tmp_path: Path) -> None:
    path = tmp_path / "docs" / "spec-reference.md"
    assert docs_gen.write_reference(path) is True
    assert docs_gen.write_reference(path) is False
    path.write_text("stale")
    assert docs_gen.write_reference(path) is True
    assert path.read_text() == docs_gen.render_reference()
