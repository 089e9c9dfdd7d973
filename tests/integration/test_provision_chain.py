"""`neonops.storage.provision_pageserver` as one chain: play 1 launches the instance in a moto EC2 endpoint (tagged
`neon_host` = a test host's address), play 2 configures that host over SSH, play 3 checks its node id, registers it
with neonsim's storage controller, plans, and moves a tenant onto it under a live workload.

The test host is a network namespace with its own sshd, reached at NS_ADDR; a loop device stands in for the EBS data
volume (pageserver_data_device overrides the by-id path of the volume id play 1 passes) and neonsim's pageserver is the
binary. The test thread enters the namespace (setns), so moto, the neonsim fleet, ansible-playbook and this test's own
requests all run inside it and reach the host as the fleet would. Needs root and /usr/sbin/sshd.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml
from ec2_harness import BIN, fleet_state, image, moto_ec2, run, subnet
from migration_harness import (
    REPO,
    WORKLOAD,
    locations,
    mutating_requests,
    neonsim_restart_command,
    tenant_id,
    topology,
    unavailable_reads,
    verdict,
    wait_for_writes,
)

from neonsim import fleet as fleet_mod

pytestmark = pytest.mark.neonsim

# Distinct from extensions/molecule/pageserver (neonops-pshost, 10.213.77.0/30).
NETNS = "neonops-chain"
NS_ADDR = "10.213.78.2"
REGION = "us-east-1"
AZ = "us-east-1b"
NODE_ID = 4
PLAYBOOK = "neonops.storage.provision_pageserver"
GIB = 1024**3


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: rc {proc.returncode}: {proc.stderr}")
    return proc


@contextlib.contextmanager
def network_namespace():
    """A fresh namespace with NS_ADDR on its loopback; the calling thread (and every process it starts) is inside."""
    sh("ip", "netns", "del", NETNS, check=False)
    sh("ip", "netns", "add", NETNS)
    root = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        sh("ip", "-n", NETNS, "link", "set", "lo", "up")
        sh("ip", "-n", NETNS, "addr", "add", f"{NS_ADDR}/32", "dev", "lo")
        target = os.open(f"/run/netns/{NETNS}", os.O_RDONLY)
        try:
            os.setns(target, os.CLONE_NEWNET)
        finally:
            os.close(target)
        try:
            yield
        finally:
            os.setns(root, os.CLONE_NEWNET)
    finally:
        os.close(root)
        # Every process left in it (sshd's sessions, the pageserver the role started), gone before the unmount.
        for _ in range(100):
            pids = sh("ip", "netns", "pids", NETNS, check=False).stdout.split()
            if not pids:
                break
            sh("kill", "-9", *pids, check=False)
            time.sleep(0.1)
        sh("ip", "netns", "del", NETNS, check=False)


@contextlib.contextmanager
def sshd(tmp: Path):
    ssh = tmp / "ssh"
    ssh.mkdir(mode=0o700)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    for key in ("host_key", "client_key"):
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ssh / key))
    shutil.copy(ssh / "client_key.pub", ssh / "authorized_keys")
    (ssh / "sshd_config").write_text(
        f"ListenAddress {NS_ADDR}\nPort 22\nHostKey {ssh}/host_key\nPidFile {ssh}/sshd.pid\n"
        f"AuthorizedKeysFile {ssh}/authorized_keys\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nSubsystem sftp internal-sftp\n"
    )
    sh("/usr/sbin/sshd", "-f", str(ssh / "sshd_config"))
    try:
        yield ssh / "client_key"
    finally:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int((ssh / "sshd.pid").read_text()), 9)


@contextlib.contextmanager
def loop_device(tmp: Path, mount: Path):
    image_file = tmp / "data.img"
    sh("truncate", "-s", "256M", str(image_file))
    device = sh("losetup", "--find", "--show", str(image_file)).stdout.strip()
    try:
        yield device
    finally:
        for _ in range(50):
            if (
                sh("mountpoint", "-q", str(mount), check=False).returncode != 0
                or sh("umount", str(mount), check=False).returncode == 0
            ):
                break
            time.sleep(0.2)
        sh("losetup", "-d", device, check=False)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    if os.geteuid() != 0 or not Path("/usr/sbin/sshd").exists():
        pytest.fail("the chain test needs root (a network namespace, a loop device) and /usr/sbin/sshd")
    tmp = tmp_path_factory.mktemp("chain")
    root_dir = tmp / "root"
    (root_dir / "bin").mkdir(parents=True)
    with contextlib.ExitStack() as stack:
        # Unmounted last, after the namespace's processes (the pageserver on the volume) are gone.
        device = stack.enter_context(loop_device(tmp, root_dir / "storage"))
        stack.enter_context(network_namespace())
        client_key = stack.enter_context(sshd(tmp))
        endpoint = stack.enter_context(moto_ec2(tmp))
        aws = {"endpoint": endpoint, "subnet": subnet(endpoint, REGION, "b"), "image": image(endpoint, REGION)}
        fleet_dir = tmp_path_factory.mktemp("fleet")
        layout = topology(
            [{"name": "moving", "pageservers": ["ps1"]}],
            [{"name": "c-moving", "tenant": "moving", "workload": WORKLOAD}],
        )
        layout.update(
            availability_zones=[AZ],
            pageservers=[{"name": "ps1", "node_id": 1, "az": AZ, "disk_capacity_bytes": 100 * GIB}],
            safekeepers=[{"name": "sk1", "az": AZ}],
        )
        sim = fleet_mod.start_fleet(layout, fleet_dir, owner_pid=os.getpid())
        stack.callback(sim.down)
        wait_for_writes(sim, "c-moving")
        yield {"tmp": tmp, "aws": aws, "sim": sim, "inventory": host_inventory(tmp, client_key, device, root_dir, sim)}


def host_inventory(tmp: Path, client_key: Path, device: str, root_dir: Path, sim) -> Path:
    """Group vars of pageserver_instance_new: how Ansible reaches the host play 1 adds, and the role's variables
    that keep everything it writes in the test's directory (the namespace shares the machine's file system)."""
    binary = tmp / "pageserver-bin"
    binary.write_text(f'#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m neonsim pageserver "$@"\n')
    binary.chmod(0o755)
    group_vars = {
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(client_key),
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        "pageserver_data_device": device,
        "pageserver_data_mount": str(root_dir / "storage"),
        "pageserver_fstab": str(root_dir / "fstab"),
        "pageserver_facts_dir": str(root_dir / "facts.d"),
        "pageserver_binary_src": str(binary),
        "pageserver_binary_path": str(root_dir / "bin" / "pageserver"),
        "pageserver_user": "root",
        "pageserver_group": "root",
        "pageserver_create_user": False,
        "pageserver_service_manager": "process",
        "pageserver_log_file": str(root_dir / "pageserver.log"),
        "pageserver_pid_file": str(root_dir / "pageserver.pid"),
        "pageserver_disk_min_avail_bytes": 10000000,
        # The fleet's scaled-down tenant defaults (checkpoint every 2 s, not upstream's 10 min), so the new node
        # uploads within the migration's verify phase as the fleet's pageservers do.
        "pageserver_extra_config": {"tenant_config": sim.fleet["tenant_defaults"]},
        "pageserver_environment": {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            # neonsim has no storage broker: the binary reads the fleet's safekeepers (neonsim/pageserver_binary.py).
            "NEONSIM_SAFEKEEPERS_FROM": str(sim.dir),
        },
    }
    path = tmp / "host-inventory.yml"
    path.write_text(yaml.safe_dump({"all": {"children": {"pageserver_instance_new": {"vars": group_vars}}}}))
    return path


def provision(chain, name: str, check: bool = False, **extra):
    sim, aws = chain["sim"], chain["aws"]
    report_dir = chain["tmp"] / name
    report_dir.mkdir()
    extra_vars = {
        "provision_pageserver_launch_instance": True,
        "provision_pageserver_configure_host": True,
        "provision_pageserver_report_dir": str(report_dir),
        "pageserver_instance_name": "ps4",
        "pageserver_instance_node_id": NODE_ID,
        "pageserver_instance_fleet": "chain",
        "pageserver_instance_subnet_id": aws["subnet"],
        "pageserver_instance_image_id": aws["image"],
        "pageserver_instance_instance_type": "m5.large",
        "pageserver_instance_data_volume_size": 100,
        "pageserver_instance_region": REGION,
        "pageserver_instance_endpoint_url": aws["endpoint"],
        "pageserver_instance_host": NS_ADDR,
        "pageserver_instance_s3_prefix": sim.fleet["pageservers"][0]["prefix_in_bucket"],
        "pageserver_instance_python_interpreter": sys.executable,
        "tenant_migration_compute_restart_command": neonsim_restart_command(),
        **extra,
    }
    cmd = [str(BIN / "ansible-playbook"), "-i", str(sim.inventory_path), "-i", str(chain["inventory"]), PLAYBOOK]
    cmd += ["-e", json.dumps(extra_vars)] + (["--check"] if check else [])
    started = time.time()
    proc = run(cmd, report_dir, timeout=900)
    reports = [p for p in report_dir.glob("provision-*.json") if p.stat().st_mtime >= started - 1]
    report = json.loads(reports[0].read_text()) if reports else None
    return proc.returncode, proc.stdout + proc.stderr, report


def recap(output: str, host: str) -> dict:
    found = re.search(rf"^{re.escape(host)}\s+: (.*)$", output, re.MULTILINE)
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", found.group(1))} if found else {}


def own_changes(requests_seen: list[dict]) -> list[dict]:
    # The pageservers' own re-attach and validate upcalls are not the playbook's.
    return [r for r in requests_seen if not r["path"].startswith("/upcall/")]


def storcon_node(sim, node_id: int):
    answer = requests.get(f"{sim.storcon_url}/control/v1/node/{node_id}", timeout=10)
    return answer.json() if answer.status_code == 200 else None


@pytest.fixture(scope="module")
def runs(chain):
    """--check, then the real run (with one tenant moved under its compute's workload), then a rerun."""
    sim, aws = chain["sim"], chain["aws"]
    moving = tenant_id(sim, "moving")
    out: dict = {"before": fleet_state(aws["endpoint"], REGION, "chain")}
    started = time.time()
    out["check"] = provision(chain, "check", check=True, provision_pageserver_tenants=[moving])
    out["check_changes"] = mutating_requests(sim, since_ts=started)
    out["after_check"] = fleet_state(aws["endpoint"], REGION, "chain")
    out["first"] = provision(chain, "first", provision_pageserver_tenants=[moving])
    out["verdict"] = verdict(sim, "c-moving")
    out["after_first"] = fleet_state(aws["endpoint"], REGION, "chain")
    started = time.time()
    out["rerun"] = provision(chain, "rerun")
    out["rerun_changes"] = mutating_requests(sim, since_ts=started)
    out["after_rerun"] = fleet_state(aws["endpoint"], REGION, "chain")
    return out


def test_check_mode_launches_nothing_and_sends_no_mutating_request(runs):
    rc, output, report = runs["check"]
    assert rc == 0, output[-6000:]
    assert runs["before"]["instances"] == {} and runs["after_check"] == runs["before"]
    assert own_changes(runs["check_changes"]) == []
    assert report is None
    assert "instance ps4 would be launched" in output, output[-6000:]


def test_one_run_launches_configures_registers_and_moves(runs, chain):
    sim = chain["sim"]
    rc, output, report = runs["first"]
    assert rc == 0, output[-10000:]
    # Play 1: one instance with its data volume and the tags the inventory contract reads.
    ((instance_id, instance),) = runs["after_first"]["instances"].items()
    assert instance["tags"]["neon_host"] == NS_ADDR and instance["tags"]["neon_node_id"] == str(NODE_ID)
    assert instance["tags"]["neon_http_port"] == "9898" and instance["tags"]["neon_pg_port"] == "64000"
    volume = runs["after_first"]["volumes"][instance["devices"]["/dev/sdf"]]
    assert volume["tags"]["neon_volume"] == "pageserver-data" and volume["size"] == 100
    # Play 2 reached the host over SSH and changed it (the role's tasks on ps4).
    assert recap(output, "ps4").get("changed", 0) > 0, output[-6000:]
    # The service answers at the address play 1 tagged, with the node id.
    assert requests.get(f"http://{NS_ADDR}:9898/v1/status", timeout=10).json()["id"] == NODE_ID
    node = storcon_node(sim, NODE_ID)
    assert node is not None and node["availability"] == "Active", node
    assert (node["listen_http_addr"], node["listen_http_port"]) == (NS_ADDR, 9898)
    assert (node["listen_pg_addr"], node["listen_pg_port"]) == (NS_ADDR, 64000)
    assert node["availability_zone_id"] == AZ
    # Play 3: the tenant moved onto the new node, the source detached, no lost write, no unavailable read.
    moving = tenant_id(sim, "moving")
    assert [(m["tenant_id"], m["outcome"]) for m in report["moves"]] == [(moving, "migrated")], report["moves"]
    new_ps = requests.get(f"http://{NS_ADDR}:9898/v1/location_config", timeout=10).json()
    assert dict(new_ps["tenant_shards"])[moving]["mode"] == "AttachedSingle"
    assert moving not in locations(sim, "ps1")
    result = runs["verdict"]
    assert result["verified"]["lost_writes"] == 0, result
    assert unavailable_reads(result["during"]) == {}, result["during"]
    assert report["new_node"] == {"name": "ps4", "node_id": NODE_ID, "registered": True}
    assert instance_id.startswith("i-")


def test_rerun_adopts_the_instance_and_changes_nothing(runs):
    rc, output, report = runs["rerun"]
    assert rc == 0, output[-6000:]
    assert runs["after_rerun"] == runs["after_first"]
    assert recap(output, "ps4") and recap(output, "ps4")["changed"] == 0, output[-6000:]
    # Registered with the same addresses: no POST to the controller, no other change anywhere.
    assert own_changes(runs["rerun_changes"]) == []
    assert report["outcome"] == "no_moves" and report["new_node"]["registered"]
