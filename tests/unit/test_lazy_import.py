"""`resources.lazy_import.lazy_module`: a module stand-in that imports the real module on first attribute read."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from resources.lazy_import import lazy_module


@pytest.fixture
def heavy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The name of a fresh module that counts how often it is imported (in `IMPORTS` of `heavy_counter`)."""
    (tmp_path / "heavy_counter.py").write_text("IMPORTS = []\n")
    (tmp_path / "heavy_probe.py").write_text(
        "import heavy_counter\nheavy_counter.IMPORTS.append(1)\nclass Table:\n    pass\nVALUE = 42\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("heavy_probe", "heavy_counter"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    yield "heavy_probe"
    for name in ("heavy_probe", "heavy_counter"):
        sys.modules.pop(name, None)


def test_the_module_is_imported_on_the_first_attribute_read_and_only_then(heavy: str) -> None:
    stand_in = lazy_module(heavy)
    assert heavy not in sys.modules
    assert stand_in.VALUE == 42
    assert heavy in sys.modules
    real = sys.modules[heavy]
    assert stand_in.Table is real.Table
    assert isinstance(real.Table(), stand_in.Table)
    assert sys.modules["heavy_counter"].IMPORTS == [1]  # imported once, however many reads


def test_a_submodule_imported_after_the_first_read_is_found_through_the_real_module(heavy: str) -> None:
    stand_in = lazy_module(heavy)
    assert stand_in.VALUE == 42
    sys.modules[heavy].added_later = "late"  # as `import pyarrow.compute` sets `pyarrow.compute`
    assert stand_in.added_later == "late"


def test_an_unknown_module_fails_at_the_first_read_as_its_import_would() -> None:
    stand_in = lazy_module("no_such_module_for_lazy_import")
    with pytest.raises(ModuleNotFoundError, match="no_such_module_for_lazy_import"):
        _ = stand_in.anything


def test_an_unknown_attribute_is_an_attribute_error(heavy: str) -> None:
    stand_in = lazy_module(heavy)
    with pytest.raises(AttributeError, match="missing"):
        _ = stand_in.missing
