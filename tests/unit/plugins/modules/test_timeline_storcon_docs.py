"""The timeline and storcon info modules' documentation renders and matches their argument specs."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible_collections.neonops.storage.plugins.modules import storcon_node_info, storcon_tenant_info, timeline

MODULES = {"timeline": timeline, "storcon_node_info": storcon_node_info, "storcon_tenant_info": storcon_tenant_info}


@functools.cache
def rendered_docs() -> dict:
    collections_root = Path(timeline.__file__).absolute().parents[5]
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections_root), ANSIBLE_NOCOLOR="1")
    ansible_doc = Path(sys.executable).parent / "ansible-doc"
    names = [f"neonops.storage.{name}" for name in MODULES]
    done = subprocess.run([str(ansible_doc), "--json", *names], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_documentation_matches_argspec(name):
    rendered = rendered_docs()[f"neonops.storage.{name}"]
    options = rendered["doc"]["options"]
    spec = MODULES[name].argument_spec()
    assert sorted(options) == sorted(spec)
    for option, rule in spec.items():
        assert options[option]["type"] == rule.get("type", "str"), option
        assert bool(options[option].get("required")) == bool(rule.get("required")), option
        assert options[option].get("default") == rule.get("default"), option
        assert options[option].get("choices") == rule.get("choices"), option
    assert spec["api_token"]["no_log"] is True
    assert rendered["examples"].strip() and rendered["return"]
    assert rendered["doc"]["attributes"]["action_group"]["membership"] == ["neonops.storage.neon"]


def test_attributes():
    docs = rendered_docs()
    assert docs["neonops.storage.timeline"]["doc"]["attributes"]["check_mode"]["support"] == "full"
    assert docs["neonops.storage.timeline"]["doc"]["attributes"]["diff_mode"]["support"] == "full"
    for name in ("storcon_node_info", "storcon_tenant_info"):
        attributes = docs[f"neonops.storage.{name}"]["doc"]["attributes"]
        assert attributes["check_mode"]["support"] == "full"
        assert attributes["diff_mode"]["support"] == "N/A"


def test_modules_are_in_the_action_group():
    runtime = Path(timeline.__file__).absolute().parents[2] / "meta" / "runtime.yml"
    group = yaml.safe_load(runtime.read_text())["action_groups"]["neon"]
    assert set(MODULES) <= set(group)
    assert group == sorted(group)
