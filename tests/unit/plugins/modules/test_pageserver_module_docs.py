"""The pageserver modules' documentation renders and matches their argument specs."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.module_utils import basic

MODULES = (
    "pageserver_info",
    "tenant_info",
    "tenant_location",
    "tenant_config",
    "heatmap_upload",
    "secondary_download",
    "timeline_catchup",
)
COLLECTIONS = Path(__file__).resolve().parents[4] / ".collections"


@pytest.fixture(scope="module")
def rendered_docs():
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_NOCOLOR="1")
    ansible_doc = Path(sys.executable).with_name("ansible-doc")
    names = [f"neonops.storage.{name}" for name in MODULES]
    completed = subprocess.run(
        [str(ansible_doc), "--json", *names], env=env, capture_output=True, text=True, check=False, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


class _SpecCaptured(Exception):
    pass


def argument_spec_of(name, monkeypatch):
    module = importlib.import_module(f"ansible_collections.neonops.storage.plugins.modules.{name}")
    captured = {}

    def fake_init(self, argument_spec, **kwargs):
        captured["spec"] = argument_spec
        captured["kwargs"] = kwargs
        raise _SpecCaptured

    monkeypatch.setattr(basic.AnsibleModule, "__init__", fake_init)
    with pytest.raises(_SpecCaptured):
        module.main()
    return captured


@pytest.mark.parametrize("name", MODULES)
def test_docs_render_with_attributes_and_action_group(rendered_docs, name):
    doc = rendered_docs[f"neonops.storage.{name}"]["doc"]
    attributes = doc["attributes"]
    for attribute in ("check_mode", "diff_mode", "idempotent"):
        assert attributes[attribute]["support"] in ("full", "partial", "none", "N/A"), attribute
        assert attributes[attribute]["description"], attribute
        if attributes[attribute]["support"] == "partial":
            assert attributes[attribute].get("details"), attribute
    assert attributes["action_group"]["membership"] == ["neonops.storage.neon"]
    assert rendered_docs[f"neonops.storage.{name}"]["examples"].strip()


@pytest.mark.parametrize("name", MODULES)
def test_documented_options_match_argument_spec(rendered_docs, name, monkeypatch):
    documented = rendered_docs[f"neonops.storage.{name}"]["doc"]["options"]
    captured = argument_spec_of(name, monkeypatch)
    spec = captured["spec"]
    assert set(documented) == set(spec)
    for option, settings in spec.items():
        assert documented[option].get("type", "str") == settings.get("type", "str"), option
        assert documented[option].get("required", False) == settings.get("required", False), option
        if "default" in settings:
            assert documented[option].get("default") == settings["default"], option
        assert documented[option].get("choices") == settings.get("choices"), option
    assert captured["kwargs"].get("supports_check_mode") is True
    assert spec["api_token"]["no_log"] is True


def test_every_module_is_in_the_action_group():
    runtime = (COLLECTIONS / "ansible_collections/neonops/storage/meta/runtime.yml").read_text()
    import yaml

    group = yaml.safe_load(runtime)["action_groups"]["neon"]
    assert set(MODULES) <= set(group)
    assert group == sorted(group)
