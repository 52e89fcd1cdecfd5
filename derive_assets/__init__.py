"""Derive: table specs in YAML become a Dagster asset graph.

`DeriveTranslator` and `DeriveNode` (`derive_assets.translator`) are importable from here; they are loaded on
first use, so `import derive_assets` (every step process imports it) costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from derive_assets.translator import DeriveNode, DeriveTranslator

__all__ = ["DeriveNode", "DeriveTranslator"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from derive_assets import translator

        return getattr(translator, name)
    raise AttributeError(f"module 'derive_assets' has no attribute {name!r}")
