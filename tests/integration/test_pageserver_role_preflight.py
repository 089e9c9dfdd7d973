"""The pageserver role refuses bad input in preflight, before it touches the host (no fleet needed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from migration_harness import ansible_env

GOOD = {
    "pageserver_node_id": 4,
    "pageserver_availability_zone": "az-b",
    "pageserver_data_device": "/dev/null",
    "pageserver_binary_src": "/bin/true",
    "pageserver_s3_bucket": "neon",
    "pageserver_control_plane_api": "http://127.0.0.1:1/upcall/v1/",
}


@pytest.mark.parametrize(
    "bad",
    [
        {"pageserver_node_id": 0},
        {"pageserver_data_volume_id": "vol-0123456789abcdef0"},  # and a device: exactly one
        {"pageserver_data_device": "", "pageserver_data_volume_id": "volume-1"},
        {"pageserver_binary_url": "https://example.invalid/pageserver"},  # and a src: exactly one
        {
            "pageserver_binary_src": "",
            "pageserver_binary_url": "https://example.invalid/ps",
            "pageserver_binary_checksum": "md5:1",
        },
        {"pageserver_control_plane_api": ""},
        {"pageserver_listen_https_addr": "0.0.0.0:9899"},  # without certificate and key
        {"pageserver_http_auth_type": "NeonJWT"},  # without a public key
        {"pageserver_disk_max_usage_pct": 0},
    ],
    ids=lambda bad: ",".join(f"{k}={v}" for k, v in bad.items()),
)
def test_preflight_refuses_and_changes_nothing(tmp_path, bad):
    workdir = tmp_path / "storage"
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        "- hosts: localhost\n  connection: local\n  gather_facts: false\n"
        "  roles: [{role: neonops.storage.pageserver}]\n"
    )
    extra = {**GOOD, **bad, "pageserver_data_mount": str(workdir), "pageserver_fstab": str(tmp_path / "fstab")}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", str(playbook)]
        + ["-e", json.dumps(extra)],
        cwd=tmp_path,
        env=ansible_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "Preflight | Check the role's variables" in output and "Nothing was changed." in output, output
    assert not workdir.exists() and not (tmp_path / "fstab").exists()
