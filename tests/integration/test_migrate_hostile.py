"""Hostile playbook arguments: `neonops.storage.migrate_tenant` refuses each with one message that names the
variable (or inventory host and variable) and its value, cut when huge, before the role starts, with no traceback and
no mutating request in neonsim's request log.

The rules themselves are unit-tested in tests/unit/plugins/module_utils/test_migration_args.py; this file proves
the playbook applies them first. One fleet for the file; the cases run a few playbooks at a time (each is an
ansible-playbook start, about 2 s of CPU; none reaches the fleet).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from migration_harness import (
    MIGRATION_TOPOLOGY,
    PLAYBOOK,
    ansible_env,
    locations,
    mutating_requests,
    storcon_scheduling,
    tenant_id,
    topology,
)

pytestmark = pytest.mark.neonsim

CHECK_TASK = "TASK [Check the variables and the inventory]"
ROLE_STARTED = "neonops.storage.tenant_migration :"
SECRET = "hunter2-canary"
HUGE = "f" * (10 << 20)


@dataclass
class Case:
    id: str
    variables: dict  # extra vars over the valid ones; None removes one
    named: str  # the message starts with this
    shown: str  # and carries this (the value, or what is wrong)
    inventory: dict = field(default_factory=dict)  # ps2's inventory variables to change
    key_value: list = field(default_factory=list)  # extra `-e key=value` arguments (strings, as operators type them)


CASES = [
    Case("tenant-trailing-newline", {"tenant_migration_tenant_id": "{tid}\n"}, "tenant_migration_tenant_id", "\\n'"),
    Case("tenant-path", {"tenant_migration_tenant_id": "{tid}/../x"}, "tenant_migration_tenant_id", "/../x"),
    Case("tenant-nul", {"tenant_migration_tenant_id": "{tid}\x00"}, "tenant_migration_tenant_id", "NUL"),
    Case("tenant-10mb", {"tenant_migration_tenant_id": HUGE}, "tenant_migration_tenant_id", "10485760 characters"),
    Case("tenant-missing", {"tenant_migration_tenant_id": None}, "tenant_migration_tenant_id", "is required"),
    Case("shard-0401", {"tenant_migration_shard": "0401"}, "tenant_migration_shard", "'0401'"),
    Case("source-is-destination", {"tenant_migration_destination": "ps1"}, "tenant_migration_destination", "source"),
    Case("unknown-source", {"tenant_migration_source": "ps9"}, "tenant_migration_source", "'ps9'"),
    Case("unknown-destination-id", {"tenant_migration_destination": 77}, "tenant_migration_destination", "77"),
    Case("source-list", {"tenant_migration_source": ["ps1"]}, "tenant_migration_source", "got list"),
    Case("flush-bool", {"tenant_migration_flush_ms": True}, "tenant_migration_flush_ms", "boolean true"),
    Case("retries-negative", {"tenant_migration_api_retries": -1}, "tenant_migration_api_retries", "-1"),
    Case("timeout-nan", {"tenant_migration_api_timeout": "nan"}, "tenant_migration_api_timeout", "'nan'"),
    Case("timeout-huge", {"tenant_migration_attach_timeout": 1e30}, "tenant_migration_attach_timeout", "1e+30"),
    Case("unicode-digits", {"tenant_migration_download_timeout": "١٠"}, "tenant_migration_download_timeout", "١٠"),
    Case(
        "unicode-duration",
        {"tenant_migration_suspend_overrides": {"gc_period": "١h", "compaction_period": "0s"}},
        "tenant_migration_suspend_overrides",
        "gc_period",
    ),
    Case("choice", {"tenant_migration_compute_cutover": "Reconfigure"}, "tenant_migration_compute_cutover", "restart"),
    Case("ca-path-missing", {"tenant_migration_ca_path": "/nonexistent/ca.pem"}, "tenant_migration_ca_path", "exist"),
    Case("misspelt", {"tenant_migration_sorce": "ps1"}, "tenant_migration_sorce", "tenant_migration_source"),
    Case("key-value-int", {}, "tenant_migration_flush_ms", "'10s'", key_value=["tenant_migration_flush_ms=10s"]),
    Case(
        "inventory-userinfo",
        {},
        "inventory host ps2 (group pageservers): neon_api_url",
        "user information",
        inventory={"neon_api_url": f"http://admin:{SECRET}@127.0.0.1:1"},
    ),
    Case(
        "inventory-long-label",
        {},
        "inventory host ps2 (group pageservers): neon_api_url",
        "1 to 63 characters",
        inventory={"neon_api_url": f"http://{'a' * 64}.example:9898"},
    ),
    Case(
        "inventory-node-id-bool",
        {},
        "inventory host ps2 (group pageservers): neon_node_id",
        "boolean",
        inventory={"neon_node_id": True},
    ),
]


@pytest.fixture(scope="module")
def fleet(neonsim_fleet_module):
    # One tenant and no compute: nothing here may reach the fleet, it only has to be there to prove that.
    pageservers = [ps for ps in MIGRATION_TOPOLOGY["pageservers"] if ps["name"] in ("ps1", "ps2")]
    layout = topology([{"name": "victim", "pageservers": ["ps1"]}], [])
    return neonsim_fleet_module({**layout, "pageservers": pageservers})


def run_case(fleet, case: Case, workdir: Path) -> subprocess.CompletedProcess:
    workdir.mkdir(parents=True)
    tid = tenant_id(fleet, "victim")
    variables = {
        "tenant_migration_tenant_id": tid,
        "tenant_migration_source": "ps1",
        "tenant_migration_destination": "ps2",
        "tenant_migration_report_dir": str(workdir / "reports"),
    }
    for name, value in case.variables.items():
        if value is None:
            variables.pop(name, None)
        else:
            variables[name] = value.format(tid=tid) if isinstance(value, str) and "{tid}" in value else value
    inventory = fleet.inventory_path
    if case.inventory:
        data = yaml.safe_load(inventory.read_text())
        data["all"]["children"]["pageservers"]["hosts"]["ps2"].update(case.inventory)
        inventory = workdir / "inventory.yml"
        inventory.write_text(yaml.safe_dump(data))
    # A file: one command-line argument may not exceed 128 KiB, and the 10 MB case is bigger.
    (workdir / "vars.json").write_text(json.dumps(variables))
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), PLAYBOOK]
    cmd += ["-e", f"@{workdir / 'vars.json'}"]
    for pair in case.key_value:
        cmd += ["-e", pair]
    return subprocess.run(
        cmd, cwd=workdir, env=ansible_env(workdir), capture_output=True, text=True, timeout=600, check=False
    )


@pytest.fixture(scope="module")
def outcomes(fleet, tmp_path_factory):
    """Every case, run a few at a time; the request log is read after the last one."""
    root = tmp_path_factory.mktemp("hostile")
    started = time.time()
    with ThreadPoolExecutor(max_workers=3) as pool:
        runs = dict(zip((c.id for c in CASES), pool.map(lambda c: run_case(fleet, c, root / c.id), CASES), strict=True))
    return {"runs": runs, "started": started, "root": root}


def fatal_message(output: str) -> str:
    found = re.search(r"^fatal: \[localhost\]: FAILED! => (\{.*\})$", output, re.M)
    assert found, output[-3000:]
    return json.loads(found.group(1))["msg"]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_argument_is_refused_naming_the_variable(outcomes, case):
    run = outcomes["runs"][case.id]
    output = run.stdout + run.stderr
    assert run.returncode != 0, output[-3000:]
    message = fatal_message(output)
    assert message.startswith(case.named + ":"), message
    assert case.shown in message, message
    # The playbook's own check failed: the role (whose argument check prints every rule) never started.
    assert CHECK_TASK in output and ROLE_STARTED not in output, output[-3000:]
    assert "Traceback" not in output and "argument_spec_data" not in output, output[-3000:]
    assert len(output) < 20_000, f"{len(output)} characters of output: a value was echoed whole"
    assert SECRET not in output
    assert not (outcomes["root"] / case.id / "reports").exists(), "nothing is written for a refused run"


def test_no_case_sent_a_mutating_request(fleet, outcomes):
    assert len(outcomes["runs"]) == len(CASES) >= 20
    # /upcall/ requests are the simulated pageservers' own calls to the storage controller (generation checks).
    sent = [r for r in mutating_requests(fleet, since_ts=outcomes["started"]) if not r["path"].startswith("/upcall/")]
    assert sent == []
    tid = tenant_id(fleet, "victim")
    assert locations(fleet, "ps1")[tid]["mode"] == "AttachedSingle"
    assert tid not in locations(fleet, "ps2")
    assert storcon_scheduling(fleet, tid) == {"Active"}
