"""neonops.storage.release_s3_prefix on a neonsim fleet: from two prefixes to one.

ps1 reads prefix psa/, ps2 reads psb/. Tenants t1 and t2 start on ps1 (so in psa), t3 on ps2. Each step lists the
bucket (straight from moto, not through the logged proxy) before and after:

1. t1 and t2 are copied into psb with s3_tenant_copy (the cross-prefix migrate will replace this setup).
2. Releasing t1 while it is attached on ps1 is refused; so is releasing it while ps1 keeps a secondary of it.
3. t1 and t2 are re-attached on ps2 (a new generation from the storage controller) and detached from ps1.
4. Releasing the whole prefix psa is refused while ps1 is still configured with it.
5. --check prints the plan of releasing t1 and makes zero mutating requests (s3proxy log, pageserver logs).
6. Tombstoning t1 removes exactly psa's copy of t1; a rerun changes nothing.
7. ps1 is reconfigured to psb (neonsim set-prefix); deleting psa needs the exact confirmation, then removes psa's
   tenant data and nothing else.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from neonsim.pageserver.testing import Harness
from tests.integration.migration_harness import MIGRATION_TOPOLOGY, ansible_env

pytestmark = pytest.mark.neonsim

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = "neonops.storage.release_s3_prefix"


def _topology() -> dict:
    seed = int.from_bytes(os.urandom(4), "big")
    return {
        **MIGRATION_TOPOLOGY,
        "seed": seed,
        "pageservers": [
            {"name": "ps1", "az": "az-a", "prefix_in_bucket": "psa/"},
            {"name": "ps2", "az": "az-b", "prefix_in_bucket": "psb/"},
        ],
        "safekeepers": [],
        "tenants": [
            {"name": "t1", "pageservers": ["ps1"]},
            {"name": "t2", "pageservers": ["ps1"]},
            {"name": "t3", "pageservers": ["ps2"]},
        ],
        "computes": [],
    }


class Env:
    def __init__(self, sim, tmp_path):
        self.sim = sim
        s3 = sim.fleet["s3"]
        self.bucket = s3["bucket"]
        self.moto = sim.moto_s3()
        self.pageservers = Harness(sim)
        self.env = ansible_env(tmp_path)
        self.env.update(AWS_ACCESS_KEY_ID=s3["access_key"], AWS_SECRET_ACCESS_KEY=s3["secret_key"])
        self.env.pop("AWS_CA_BUNDLE", None)
        self.tenants = {t["name"]: t["tenant_id"] for t in sim.fleet["tenants"]}
        self.tmp = tmp_path

    def listing(self) -> dict:
        out = {}
        for page in self.moto.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for obj in page.get("Contents", []):
                out[obj["Key"]] = obj["ETag"]
        return out

    def ansible(self, args: list[str]) -> tuple[int, str]:
        proc = subprocess.run(args, env=self.env, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
        return proc.returncode, proc.stdout + proc.stderr

    def release(self, check=False, **extra) -> tuple[int, str]:
        variables = {
            "release_s3_prefix_prefix": "psa/",
            "release_s3_prefix_consolidated_prefix": "psb/",
            **extra,
        }
        cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(self.sim.inventory_path), PLAYBOOK]
        cmd += ["-e", json.dumps(variables)] + (["--check"] if check else [])
        return self.ansible(cmd)

    def copy(self, *names: str) -> None:
        play = [
            {
                "hosts": "localhost",
                "gather_facts": False,
                "tasks": [
                    {
                        "name": "Copy into the consolidated prefix",
                        "neonops.storage.s3_tenant_copy": {
                            "bucket": "{{ neon_s3_bucket }}",
                            "prefix_in_bucket": "psa/",
                            "dest_prefix_in_bucket": "psb/",
                            "tenant_id": "{{ item }}",
                            "endpoint_url": "{{ neon_s3_endpoint_url }}",
                            "region": "{{ neon_s3_region }}",
                        },
                        "loop": [self.tenants[n] for n in names],
                    }
                ],
            }
        ]
        path = self.tmp / "copy.yml"
        path.write_text(json.dumps(play))
        rc, out = self.ansible(
            [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(self.sim.inventory_path), str(path)]
        )
        assert rc == 0, out[-4000:]

    def location(self, ps: str, tenant_id: str, mode: str, generation=None) -> None:
        self.pageservers.location(ps, tenant_id, mode, generation, stripe_size=2048)

    def reattach_on_ps2(self, tenant_id: str, leave_secondary: bool) -> None:
        """Stop ps1's attachment, attach on ps2 (which reads psb) with the next generation."""
        self.location("ps1", tenant_id, "Secondary" if leave_secondary else "Detached")
        self.location("ps2", tenant_id, "AttachedSingle", self.pageservers.attach_hook(tenant_id, "ps2"))
        self.pageservers.wait_active("ps2", tenant_id, timeout=120)  # liveness bound, not a timing assertion

    def marks(self) -> dict:
        return {
            "s3": len(self.sim.s3_request_log()),
            "ps1": len(self.sim.request_log("ps1")),
            "ps2": len(self.sim.request_log("ps2")),
        }

    def requests_since(self, marks: dict) -> dict:
        return {
            "s3": self.sim.s3_request_log()[marks["s3"] :],
            "ps1": self.sim.request_log("ps1")[marks["ps1"] :],
            "ps2": self.sim.request_log("ps2")[marks["ps2"] :],
        }


def _under(listing: dict, prefix: str) -> dict:
    return {k: v for k, v in listing.items() if k.startswith(prefix)}


def test_two_prefixes_to_one_releases_only_the_old_copy(neonsim_fleet, tmp_path):
    env = Env(neonsim_fleet(_topology()), tmp_path)
    t1, t2, t3 = env.tenants["t1"], env.tenants["t2"], env.tenants["t3"]
    start = env.listing()
    assert _under(start, f"psa/tenants/{t1}/") and _under(start, f"psa/tenants/{t2}/")
    assert _under(start, f"psb/tenants/{t3}/") and not _under(start, f"psb/tenants/{t1}")

    # 1. consolidate t1 and t2 into psb
    env.copy("t1", "t2")
    copied = env.listing()
    assert {k[len("psb/") :] for k in _under(copied, f"psb/tenants/{t1}/")} == {
        k[len("psa/") :] for k in _under(start, f"psa/tenants/{t1}/")
    }

    # 2. t1 still attached on ps1, then a secondary there: refused, nothing changes
    before = env.listing()
    rc, out = env.release(release_s3_prefix_tenant_id=t1)
    assert rc != 0 and "refusal still_located" in out and f"{t1} is AttachedSingle on pageserver 'ps1'" in out, out
    assert _under(env.listing(), "psa/") == _under(before, "psa/")

    # 3. move t1 (leaving a secondary on ps1) and t2 to ps2
    env.reattach_on_ps2(t1, leave_secondary=True)
    env.reattach_on_ps2(t2, leave_secondary=False)
    rc, out = env.release(release_s3_prefix_tenant_id=t1)
    assert rc != 0 and f"{t1} is Secondary on pageserver 'ps1'" in out, out
    env.location("ps1", t1, "Detached")
    assert _under(env.listing(), "psa/") == _under(before, "psa/")

    # 4. the whole prefix while ps1 is configured with it: refused before any request
    marks = env.marks()
    rc, out = env.release()
    assert rc != 0 and "refusal prefix_in_use" in out and "pageservers[0].prefix_in_bucket" in out, out
    seen = env.requests_since(marks)
    assert not [r for r in seen["s3"] if "Ansible" in r["user_agent"]]
    assert _under(env.listing(), "psa/") == _under(before, "psa/")

    # 5. --check: the plan, zero mutating requests
    marks = env.marks()
    rc, out = env.release(check=True, release_s3_prefix_tenant_id=t1)
    assert rc == 0, out[-4000:]
    t1_old = _under(env.listing(), f"psa/tenants/{t1}/")
    assert f"tombstone s3://{env.bucket}/psa/tenants/{t1}: {len(t1_old)} objects" in out, out[-4000:]
    seen = env.requests_since(marks)
    ours = [r for r in seen["s3"] if "Ansible" in r["user_agent"]]
    assert ours and not [r for r in ours if r["mutating"]], ours
    assert not [r for r in seen["s3"] if r["mutating"] and ("/psa/" in r["path"] or "/neonops-trash/" in r["path"])]
    assert not [r for r in seen["ps1"] + seen["ps2"] if r["mutating"]]
    assert [r["path"] for r in seen["ps1"] if r["path"] == "/v1/location_config"]
    assert _under(env.listing(), "psa/") == _under(before, "psa/")

    # 6. tombstone t1: exactly psa's copy of t1 goes (to the trash); a rerun changes nothing
    before = env.listing()
    rc, out = env.release(release_s3_prefix_tenant_id=t1)
    assert rc == 0, out[-4000:]
    after = env.listing()
    gone = set(before) - set(after)
    assert gone == set(t1_old)
    assert set(_under(after, "neonops-trash/")) == {f"neonops-trash/{k}" for k in gone}
    assert _under(after, "psa/") == {k: v for k, v in _under(before, "psa/").items() if k not in gone}
    assert _under(after, f"psb/tenants/{t1}") and _under(after, f"psb/tenants/{t3}")
    rc, out = env.release(release_s3_prefix_tenant_id=t1)
    assert rc == 0 and "changed=0" in out, out[-4000:]

    # 7. ps1 now reads psb; delete the rest of psa (t2) only with the exact confirmation
    env.sim.set_pageserver_prefix("ps1", "psb/")
    before = env.listing()
    rc, out = env.release(release_s3_prefix_mode="delete", release_s3_prefix_confirm="psa/tenants")
    assert rc != 0 and "refusal confirm" in out, out[-4000:]
    assert env.listing().keys() >= before.keys()
    rc, out = env.release(release_s3_prefix_mode="delete", release_s3_prefix_confirm="psa")
    assert rc == 0, out[-4000:]
    after = env.listing()
    assert set(before) - set(after) == set(_under(before, "psa/tenants/"))
    assert _under(before, f"psa/tenants/{t2}/")
    assert _under(after, "neonops-trash/") == _under(before, "neonops-trash/")
    for tenant in (t1, t2, t3):
        assert _under(after, f"psb/tenants/{tenant}/"), tenant
