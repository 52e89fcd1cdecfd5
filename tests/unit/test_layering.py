"""`resources/` is a leaf package: engines, online stores and their neutral types never import the product
(`derive_assets`), so a backend can be built, tested and reused without the asset factory.

The modules are parsed, not imported: every `import` and `from … import` counts, including those inside
functions or `TYPE_CHECKING` blocks, and relative imports that climb out of the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESOURCES = ROOT / "resources"
FORBIDDEN = "derive_assets"


def product_imports(path: Path) -> list[str]:
    """`line: statement` for each import of `derive_assets` in one module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level > 1:  # `from ..derive_assets import x` (or `from .. import derive_assets`)
                names = [f"..{node.module or ''}", *(alias.name for alias in node.names)]
            else:
                names = [node.module or ""]
        else:
            continue
        if any(n.lstrip(".").split(".")[0] == FORBIDDEN for n in names):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def modules() -> list[Path]:
    return sorted(RESOURCES.rglob("*.py"))


def test_the_resources_package_has_modules():
    assert len(modules()) >= 10  # a moved package must not make the test below pass vacuously


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_under_resources_imports_derive_assets(path: Path):
    assert product_imports(path) == [], (
        f"{path.relative_to(ROOT)} imports {FORBIDDEN}; resources/ must stay a leaf package: move the shared type "
        "into resources/ (or the code that needs the product into derive_assets/)"
    )


@pytest.mark.parametrize(
    "source",
    [
        "import derive_assets",
        "import derive_assets.specs.models as m",
        "from derive_assets.specs import models",
        "from derive_assets import settings",
        "def f():\n    from derive_assets.replication.extract import x\n",
        "if TYPE_CHECKING:\n    from derive_assets.specs.models import Column\n",
        "from ..derive_assets import x",
        "from .. import derive_assets",
        "import os, derive_assets.plan",
    ],
)
def test_every_spelling_of_the_import_is_found(tmp_path: Path, source: str):
    module = tmp_path / "m.py"
    module.write_text(source)
    assert len(product_imports(module)) == 1


@pytest.mark.parametrize(
    "source",
    [
        "import derive_assets_extra",
        "from resources.schema import ColumnDef",
        "from . import derive_assets",  # a sibling module of that name inside resources/ is not the product
        "x = 'derive_assets'",
    ],
)
def test_other_imports_are_not_flagged(tmp_path: Path, source: str):
    module = tmp_path / "m.py"
    module.write_text(source)
    assert product_imports(module) == []
