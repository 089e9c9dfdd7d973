from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_collections.neonops.storage.plugins.modules import tenant_generation
from ansible_collections.neonops.storage.tests.unit.conftest import SECRET_TOKEN, TENANT_ID

TSID = f"{TENANT_ID}-0104"


@pytest.fixture
def registered(fake_api):
    fake_api.add("GET", "/control/v1/node/2", {"id": 2, "availability": "Active", "scheduling": "Active"})
    return fake_api


@pytest.fixture
def storcon(registered):
    registered.add("POST", "/debug/v1/inspect", {"attachment": [4, 1]})
    return registered


def args(api, **extra):
    return {"api_url": api.url, "api_token": SECRET_TOKEN, "tenant_shard_id": TSID, "node_id": 2, **extra}


def test_issues_next_generation_and_reports_previous(storcon, run_module):
    storcon.add("POST", "/debug/v1/attach-hook", {"gen": 5})
    run = run_module(tenant_generation, args(storcon), diff=True)
    assert not run.failed, run.result
    assert run.changed
    assert (run["generation"], run["previous_generation"], run["previous_node_id"], run["node_id"]) == (5, 4, 1, 2)
    assert run["diff"] == {"before": {"generation": 4, "node_id": 1}, "after": {"generation": 5, "node_id": 2}}
    hook = storcon.calls("POST", "/debug/v1/attach-hook")
    assert [c.body for c in hook] == [{"tenant_shard_id": TSID, "node_id": 2}]
    assert hook[0].headers["Authorization"] == f"Bearer {SECRET_TOKEN}"
    assert SECRET_TOKEN not in run.raw


def test_every_run_issues_a_new_generation(registered, run_module):
    fake_api = registered
    # Not idempotent by design: the second run must ask again, not report "unchanged".
    authority = {"generation": 4, "node_id": 1}

    def attach_hook(request):
        authority.update(generation=authority["generation"] + 1, node_id=request.body["node_id"])
        return 200, {"gen": authority["generation"]}

    fake_api.add("POST", "/debug/v1/inspect", handler=lambda r: (200, {"attachment": list(authority.values())}))
    fake_api.add("POST", "/debug/v1/attach-hook", handler=attach_hook)
    first = run_module(tenant_generation, args(fake_api))
    second = run_module(tenant_generation, args(fake_api))
    assert (first["previous_generation"], first["generation"]) == (4, 5)
    assert (second["previous_generation"], second["generation"]) == (5, 6)
    assert second["previous_node_id"] == 2
    assert first.changed and second.changed
    assert len(fake_api.calls("POST", "/debug/v1/attach-hook")) == 2


def test_check_mode_reports_current_generation_without_incrementing(storcon, run_module):
    run = run_module(tenant_generation, args(storcon), check_mode=True, diff=True)
    assert not run.failed
    assert run.changed
    assert run["generation"] == 4
    assert run["previous_generation"] == 4
    assert storcon.mutating_requests == []
    assert [c.path for c in storcon.requests] == ["/control/v1/node/2", "/debug/v1/inspect"]
    assert run["diff"]["after"] == {"generation": "above 4", "node_id": 2}


def test_unknown_shard_has_no_previous_generation(registered, run_module):
    fake_api = registered
    fake_api.add("POST", "/debug/v1/inspect", {"attachment": None})
    fake_api.add("POST", "/debug/v1/attach-hook", {"gen": 1})
    run = run_module(tenant_generation, args(fake_api))
    assert (run["generation"], run["previous_generation"], run["previous_node_id"]) == (1, None, None)


def test_tenant_shard_id_is_normalized(storcon, run_module):
    storcon.add("POST", "/debug/v1/attach-hook", {"gen": 5})
    run = run_module(tenant_generation, args(storcon, tenant_shard_id=TSID.upper()))
    assert run["tenant_shard_id"] == TSID
    assert storcon.calls("POST", "/debug/v1/attach-hook")[0].body["tenant_shard_id"] == TSID


@pytest.mark.parametrize("status", [400, 401, 403, 500, 503])
def test_attach_hook_error_names_what_was_attempted(storcon, run_module, status):
    storcon.add("POST", "/debug/v1/attach-hook", {"msg": "Forbidden: JWT authentication error"}, status)
    run = run_module(tenant_generation, args(storcon))
    assert run.failed
    assert f"Issuing a new generation for tenant shard {TSID} on node 2 failed" in run["msg"]
    assert f"HTTP {status}" in run["msg"]
    assert run["status"] == status
    assert SECRET_TOKEN not in run.raw
    # POST is never retried: a retried attach-hook would burn a second generation.
    assert len(storcon.calls("POST", "/debug/v1/attach-hook")) == 1


def test_inspect_error_fails_before_anything_is_issued(registered, run_module):
    fake_api = registered
    fake_api.add("POST", "/debug/v1/inspect", {"msg": "Unauthorized: missing authorization header"}, 401)
    run = run_module(tenant_generation, args(fake_api))
    assert run.failed
    assert f"Reading the current generation of tenant shard {TSID} failed" in run["msg"]
    assert fake_api.calls("POST", "/debug/v1/attach-hook") == []


def test_unregistered_node_gets_no_generation(fake_api, run_module):
    fake_api.add("GET", "/control/v1/node/2", {"msg": "NotFound: Node 2 not found"}, 404)
    run = run_module(tenant_generation, args(fake_api))
    assert run.failed
    assert run["msg"].startswith("node_id: node 2 is not registered with the storage controller")
    assert fake_api.mutating_requests == []


def test_node_check_error_names_what_was_attempted(fake_api, run_module):
    fake_api.add("GET", "/control/v1/node/2", {"msg": "Forbidden: JWT authentication error"}, 403)
    run = run_module(tenant_generation, args(fake_api))
    assert run.failed
    assert run["msg"].startswith("Checking that node 2 is registered with the storage controller failed")
    assert "HTTP 403" in run["msg"]
    assert SECRET_TOKEN not in run.raw
    assert fake_api.mutating_requests == []


def test_generation_that_does_not_grow_is_refused(storcon, run_module):
    storcon.add("POST", "/debug/v1/attach-hook", {"gen": 4})
    run = run_module(tenant_generation, args(storcon))
    assert run.failed
    assert "not higher than the previous 4" in run["msg"]


def test_missing_generation_in_answer_fails(storcon, run_module):
    storcon.add("POST", "/debug/v1/attach-hook", {"gen": None})
    run = run_module(tenant_generation, args(storcon))
    assert run.failed
    assert "returned no generation" in run["msg"]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"tenant_shard_id": "not-a-tenant"}, "tenant_shard_id"),
        ({"tenant_shard_id": TENANT_ID + "-0404"}, "tenant_shard_id"),
        ({"node_id": -1}, "node_id"),
        ({"api_url": "ftp://storcon"}, "api_url"),
    ],
)
def test_bad_input_fails_before_any_request(fake_api, run_module, overrides, expected):
    run = run_module(tenant_generation, args(fake_api, **overrides))
    assert run.failed
    assert run["msg"].startswith(expected)
    assert fake_api.requests == []


OWN_MODULES = ("compute_info", "compute_pageserver", "safekeeper_timeline_info", "tenant_generation")


@functools.cache
def rendered_docs() -> dict:
    """These modules' documentation as ``ansible-doc --json`` renders it (fragments merged), in one run."""
    collections_root = Path(tenant_generation.__file__).absolute().parents[5]
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections_root), ANSIBLE_NOCOLOR="1")
    ansible_doc = Path(sys.executable).parent / "ansible-doc"
    names = [f"neonops.storage.{name}" for name in OWN_MODULES]
    done = subprocess.run([str(ansible_doc), "--json", *names], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def rendered_doc(module_name: str) -> dict:
    return rendered_docs()[f"neonops.storage.{module_name}"]


def assert_doc_matches_argspec(module) -> dict:
    """Every option documented with its type, required flag and default as the argspec has them."""
    name = module.__name__.rsplit(".", 1)[-1]
    rendered = rendered_doc(name)
    options = rendered["doc"]["options"]
    spec = module.argument_spec()
    assert sorted(options) == sorted(spec)
    for option, rule in spec.items():
        assert options[option]["type"] == rule.get("type", "str"), option
        assert bool(options[option].get("required")) == bool(rule.get("required")), option
        assert options[option].get("default") == rule.get("default"), option
        assert set(options[option].get("suboptions") or {}) == set(rule.get("options") or {}), option
    assert rendered["examples"].strip() and rendered["return"] is not None
    assert rendered["doc"]["attributes"]["action_group"]["membership"] == ["neonops.storage.neon"]
    return rendered["doc"]


def test_documentation_renders_and_matches_argspec():
    doc = assert_doc_matches_argspec(tenant_generation)
    assert doc["attributes"]["idempotent"]["support"] == "none"
