"""The S3 modules' documentation renders with AWS options and attributes; they form the `s3` action group."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

COLLECTIONS = Path(__file__).resolve().parents[4] / ".collections"
MODULES = ("s3_prefix_info", "s3_prefix_release", "s3_tenant_copy")


def test_docs_render_with_aws_options_and_attributes():
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_NOCOLOR="1")
    ansible_doc = Path(sys.executable).with_name("ansible-doc")
    completed = subprocess.run(
        [str(ansible_doc), "--json", *(f"neonops.storage.{m}" for m in MODULES)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    rendered = json.loads(completed.stdout)
    for name in MODULES:
        doc = rendered[f"neonops.storage.{name}"]["doc"]
        for option in (
            "region",
            "endpoint_url",
            "access_key",
            "secret_key",
            "aws_config",
            "bucket",
            "prefix_in_bucket",
        ):
            assert option in doc["options"], (name, option)
        assert {"check_mode", "diff_mode", "idempotent"} <= set(doc["attributes"]), name
        assert doc["attributes"]["action_group"]["membership"] == ["neonops.storage.s3"], name
        assert rendered[f"neonops.storage.{name}"]["return"], name


def test_runtime_stays_valid_and_s3_modules_are_in_the_s3_group_only():
    runtime = yaml.safe_load((COLLECTIONS / "ansible_collections/neonops/storage/meta/runtime.yml").read_text())
    assert runtime["requires_ansible"]
    group = runtime["action_groups"]["neon"]
    assert not set(MODULES) & set(group)
    assert runtime["action_groups"]["s3"] == sorted(MODULES)
