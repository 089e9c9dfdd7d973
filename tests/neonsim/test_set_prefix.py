"""`set-prefix`: a pageserver reconfigured to another prefix_in_bucket writes there after its restart; the s3proxy's
request log carries each request's User-Agent."""

from __future__ import annotations

import pytest
import yaml

from neonsim import fleet as fleet_mod
from neonsim.pageserver.testing import Harness
from tests.neonsim.fleet_helpers import wait_for
from tests.neonsim.test_lifecycle import cli

pytestmark = pytest.mark.neonsim

TOPOLOGY = {
    "seed": 31,
    "storage_controller": {"name": "storcon"},
    "prefix_in_bucket": "old-prefix/",
    "pageservers": [{"name": "ps1"}],
    "safekeepers": [],
    "tenants": [],
    "computes": [],
}
TENANT = "5e7c0a9b8d6f4e3a2b1c0d9e8f7a6b5c"
TIMELINE = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


def _keys(sim, prefix):
    listing = sim.moto_s3().list_objects_v2(Bucket=sim.fleet["s3"]["bucket"], Prefix=prefix)
    return [o["Key"] for o in listing.get("Contents", [])]


def test_set_prefix_restarts_the_pageserver_on_the_new_prefix(neonsim_fleet):
    sim = neonsim_fleet(TOPOLOGY)
    old_pid = sim.pids()["ps1"]["pid"]
    cli("set-prefix", "ps1", "new-prefix/", "--dir", str(sim.dir))
    sim.fleet = fleet_mod.load_fleet(sim.dir)
    assert sim.entry("ps1")["prefix_in_bucket"] == "new-prefix/"
    assert sim.pids()["ps1"]["pid"] != old_pid
    inventory = yaml.safe_load(sim.inventory_path.read_text())
    assert inventory["all"]["children"]["pageservers"]["hosts"]["ps1"]["neon_s3_prefix"] == "new-prefix/"

    h = Harness(sim)
    h.location("ps1", TENANT, "AttachedSingle", h.attach_hook(TENANT, "ps1"), stripe_size=2048)
    h.wait_active("ps1", TENANT, timeout=60)
    timeline = {"new_timeline_id": TIMELINE, "pg_version": 17}
    h.call("POST", f"{h.ps('ps1')}/v1/tenant/{TENANT}/timeline", timeline, expected=(200, 201))
    wait_for(lambda: _keys(sim, f"new-prefix/tenants/{TENANT}/"), what="the index_part under the new prefix")
    assert _keys(sim, f"old-prefix/tenants/{TENANT}") == []

    log = sim.s3_request_log()
    assert log and all("user_agent" in entry for entry in log)
    assert any("Botocore" in entry["user_agent"] for entry in log if "/new-prefix/" in entry["path"])
