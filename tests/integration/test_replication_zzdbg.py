import sys; sys.path.insert(0, "/work/main/tests/integration")
import helpers, pytest
from helpers import Replication

@pytest.mark.parametrize("kind", ["postgres", "mysql"])
@pytest.mark.parametrize("breakage", helpers.BREAKAGES)
def test_dbg(tmp_path, monkeypatch, request, kind, breakage):
    url = request.getfixturevalue(f"{kind}_url")
    rep = Replication(tmp_path, monkeypatch, url, kind)
    rep.generate(users=200)
    rep.replicate_all()
    print("WM", {r: rep.watermark(r) for r in helpers.TABLES})
    if breakage == "unreachable":
        monkeypatch.setenv(helpers.env_var("orders"), helpers.with_port(url, helpers.free_port()))
    else:
        rep.source_execute("ALTER TABLE orders DROP COLUMN status")
    res = rep.replicate("orders", ok=False)
    t = rep.failure_text(res)
    print("FAIL", kind, breakage, [l for l in t.splitlines() if "rror" in l][:8])
