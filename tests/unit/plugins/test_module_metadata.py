"""What ansible-test sanity does not check about the modules' metadata.

validate-modules (scripts/sanity.sh) already compares DOCUMENTATION with each argument spec (names, aliases,
types, defaults, choices, required), requires EXAMPLES and RETURN, checks that check mode support matches the
check_mode attribute and that token options are no_log. It does not look at meta/runtime.yml's action group
next to the modules' action_group attribute, nor require the attributes this collection documents everywhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

COLLECTION = Path(__file__).resolve().parents[3]
MODULES = sorted(path.stem for path in (COLLECTION / "plugins" / "modules").glob("*.py"))
GROUP = "neonops.storage.neon"


@pytest.fixture(scope="module")
def docs() -> dict:
    """Every module's documentation as ansible-doc renders it (doc fragments merged), in one call."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTION / ".collections"), ANSIBLE_NOCOLOR="1")
    ansible_doc = Path(sys.executable).with_name("ansible-doc")
    names = [f"neonops.storage.{name}" for name in MODULES]
    done = subprocess.run(
        [str(ansible_doc), "--json", *names], env=env, capture_output=True, text=True, check=False, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return {name.rsplit(".", 1)[1]: entry["doc"] for name, entry in json.loads(done.stdout).items()}


S3_GROUP = "neonops.storage.s3"
S3_MODULES = ["s3_prefix_info", "s3_prefix_release", "s3_tenant_copy"]


def action_groups() -> dict:
    return yaml.safe_load((COLLECTION / "meta" / "runtime.yml").read_text())["action_groups"]


def test_action_groups_list_exactly_the_modules_that_document_membership(docs):
    groups = action_groups()
    assert set(groups) == {"neon", "s3"}
    for group, full_name in (("neon", GROUP), ("s3", S3_GROUP)):
        documented = sorted(
            name
            for name, doc in docs.items()
            if doc.get("attributes", {}).get("action_group", {}).get("membership") == [full_name]
        )
        assert groups[group] == documented, group  # sorted, and module_defaults reaches every module that says so
    assert groups["s3"] == S3_MODULES
    # The S3 modules take AWS options, not the Neon connection options the neon group's defaults set.
    assert not set(S3_MODULES) & set(groups["neon"])
    every = [name for name, doc in docs.items() if "action_group" in doc.get("attributes", {})]
    assert sorted(every) == sorted(groups["neon"] + groups["s3"])


@pytest.mark.parametrize("name", MODULES)
def test_documents_check_diff_and_idempotence(docs, name):
    attributes = docs[name]["attributes"]
    for attribute in ("check_mode", "diff_mode", "idempotent"):
        assert attributes[attribute]["support"] in ("full", "partial", "none", "N/A"), attribute
        if attributes[attribute]["support"] == "partial":
            assert attributes[attribute].get("details"), f"{attribute}: partial support needs details"
