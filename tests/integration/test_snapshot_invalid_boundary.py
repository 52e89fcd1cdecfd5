# ruff: noqa: F811  (the fixtures imported from test_snapshot are the test's arguments)
"""A chunked first load counts each invalid row once, also one at a chunk boundary (issue 14's leftover).

Keyset chunks start at the previous chunk's last key, inclusive (`replication/extract.py`), so the row at each
boundary is read twice: merged by key, a valid one lands once; an invalid one used to be rejected by both chunks'
row guards, so `derive/rows_invalid` and `derive/invalid_rows` counted it twice (the quarantine table, merged by
`_id`, held it once). The `shop` source of `test_snapshot.py` (PostgreSQL and MariaDB), `chunk_rows: 1000`: the
chunks are keys 1-1000, 1000-1999, 1999-2998, 2998-3997, 3997-4500.
"""

from __future__ import annotations

import re
from typing import Any

from test_snapshot import ITEM_ROWS, Shop, reads, shop  # noqa: F401  (the fixtures, for pytest)

from derive_assets import metadata_keys as K

NULL_CURSOR = "a NULL cursor 'updated_at'"


def test_an_invalid_row_at_a_chunk_boundary_is_counted_once(shop: Shop, reads: dict[str, Any]) -> None:
    shop.fill()
    # 1000 and 1999 end a chunk and start the next one; 2500 lies inside a chunk (the control)
    shop.source("UPDATE items SET updated_at = NULL WHERE id IN (1000, 1999, 2500)")

    run = shop.replicate()

    assert run[K.SNAPSHOT_CHUNKS] == 5
    starts = [found[1] for sql in reads["sql"] if (found := re.search(r">= (\d+)", sql))]
    assert starts == ["1000", "1999", "2998", "3997"]  # each chunk starts at the last one's last key, again
    assert run[K.INVALID_ROWS] == {NULL_CURSOR: 3}
    assert run[K.ROWS_INVALID] == 3
    quarantined = shop.warehouse("SELECT _id, error FROM shop.items__quarantine ORDER BY _id")
    assert quarantined == [
        ('{"id": 1000}', NULL_CURSOR),
        ('{"id": 1999}', NULL_CURSOR),
        ('{"id": 2500}', NULL_CURSOR),
    ]
    assert shop.warehouse("SELECT count(*) FROM shop.items") == [(ITEM_ROWS - 3,)]
