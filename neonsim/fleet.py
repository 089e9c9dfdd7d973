"""Fleet lifecycle: start, stop, kill and restart the processes of a simulated fleet in DIR.

Every process (moto, the S3 fault proxy, each node) runs in its own session (process group) with
stdout/stderr in DIR/logs/<name>.log. DIR/pids.json records what `up`/`start` launched; `down` stops exactly
those process groups and verifies none is left.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from neonsim import _auth, _tls, bootstrap, inventory, topology
from neonsim._durable import write_durably

log = logging.getLogger("neonsim.fleet")

HEALTH_TIMEOUT_S = float(os.environ.get("NEONSIM_HEALTH_TIMEOUT", "120"))
STOP_TIMEOUT_S = 15.0
# Popen objects of children started by this Python process, so they can be reaped (no zombies).
_CHILDREN: dict[int, subprocess.Popen] = {}


class FleetError(RuntimeError):
    pass


def _read_json(path: Path, default=None):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default


def _write_json(path: Path, data, mode: int | None = None) -> None:
    write_durably(path, json.dumps(data, indent=2, sort_keys=True), mode=mode)


def load_fleet(directory) -> dict:
    fleet = _read_json(Path(directory) / "fleet.json")
    if fleet is None:
        raise FleetError(f"no fleet in {directory} (fleet.json missing)")
    return fleet


def load_pids(directory) -> dict:
    pids: dict = _read_json(Path(directory) / "pids.json", {}) or {}
    return pids


def pid_alive(pid: int) -> bool:
    """True if pid runs and is not a zombie (a dead child we have not reaped yet counts as dead)."""
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None:
        child.poll()
        if child.returncode is not None:
            _CHILDREN.pop(pid, None)


def node_commands(fleet: dict) -> dict[str, tuple[str, list[str]]]:
    """name → (kind, argv) for every process of the fleet, in start order."""
    directory = fleet["dir"]
    py = sys.executable
    s3 = fleet["s3"]
    cmds = {
        "moto": ("moto", [py, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3["moto_port"])]),
        "s3proxy": ("s3proxy", [py, "-m", "neonsim.s3proxy", "--dir", directory]),
    }
    if fleet.get("storage_controller"):
        name = fleet["storage_controller"]["name"]
        cmds[name] = ("storcon", [py, "-m", "neonsim.node", "--dir", directory, "--name", name])
    for group, kind in (("pageservers", "pageserver"), ("safekeepers", "safekeeper"), ("computes", "compute")):
        for entry in fleet.get(group) or []:
            cmds[entry["name"]] = (kind, [py, "-m", "neonsim.node", "--dir", directory, "--name", entry["name"]])
    return cmds


def health_url(fleet: dict, name: str) -> tuple[str, int]:
    """(URL answering 200 when the process is healthy, its port). Node URLs are https:// in a TLS fleet (fetch
    them with `verify=_tls.requests_verify(fleet)`); moto and the S3 proxy always speak plain HTTP."""
    s3 = fleet["s3"]
    if name == "moto":
        return f"http://127.0.0.1:{s3['moto_port']}/moto-api/", s3["moto_port"]
    if name == "s3proxy":
        return f"http://127.0.0.1:{s3['proxy_port']}/sim/health", s3["proxy_port"]
    from neonsim._server import find_node

    _, entry = find_node(fleet, name)
    return f"{_tls.api_url(fleet, entry)}/sim/health", entry["http_port"]


def node_names(fleet: dict) -> list[str]:
    """Every node of the fleet (the processes with a management API), storage controller first."""
    return [name for name, (kind, _) in node_commands(fleet).items() if kind not in ("moto", "s3proxy")]


def _child_env() -> dict:
    env = dict(os.environ)
    # node processes import neonsim from this checkout even when started from another cwd
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("AWS_ACCESS_KEY_ID", "testing")
    env.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def spawn(fleet: dict, name: str) -> dict:
    """Start one process of the fleet (no wait); records it in pids.json."""
    kind, argv = node_commands(fleet)[name]
    return _spawn_recorded(Path(fleet["dir"]), name, kind, argv)


def _spawn_recorded(directory: Path, name: str, kind: str, argv: list[str]) -> dict:
    # Own session (process group) so `down` can signal the whole group; logs under DIR/logs/<name>.log.
    (directory / "logs").mkdir(parents=True, exist_ok=True)
    with open(directory / "logs" / f"{name}.log", "ab") as logf:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=str(directory),
            env=_child_env(),
        )
    _CHILDREN[proc.pid] = proc
    pids = load_pids(directory)
    pids[name] = {"pid": proc.pid, "pgid": proc.pid, "kind": kind, "argv": argv, "started_at": time.time()}
    _write_json(directory / "pids.json", pids)
    return pids[name]


def wait_healthy(fleet: dict, names: list[str], timeout: float = HEALTH_TIMEOUT_S) -> None:
    """Poll each process's health URL until 200; FleetError naming the laggards (and log tails) on timeout.

    A 200 counts only from the process this fleet started (the pid in the answer): between picking a free port and
    binding it, another fleet's process may take it and answer there, while ours exits with "address already in use".
    moto's answer carries no pid; every process is checked alive once more when all have answered.
    """
    pending = set(names)
    deadline = time.monotonic() + timeout
    pids = load_pids(fleet["dir"])
    # verify= on each call: requests lets REQUESTS_CA_BUNDLE override a session-level verify.
    verify = _tls.requests_verify(fleet)
    with requests.Session() as http:
        while pending:
            for name in sorted(pending):
                pid = pids.get(name, {}).get("pid")
                _raise_if_exited(fleet, name, pid)
                url, _ = health_url(fleet, name)
                try:
                    resp = http.get(url, timeout=2, verify=verify)
                    if resp.status_code == 200 and _answered_by(resp, name, pid):
                        pending.discard(name)
                except requests.RequestException:
                    pass
            if not pending:
                break
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {n}:\n{log_tail(fleet, n)}" for n in sorted(pending))
                raise FleetError(f"not healthy after {timeout:.0f}s: {sorted(pending)}\n{tails}")
            time.sleep(0.1)
    for name in names:
        _raise_if_exited(fleet, name, pids.get(name, {}).get("pid"))


def _raise_if_exited(fleet: dict, name: str, pid: int | None) -> None:
    if pid is not None and not pid_alive(pid):
        raise FleetError(f"{name} exited during start-up:\n{log_tail(fleet, name)}")


def _answered_by(resp: requests.Response, name: str, pid: int | None) -> bool:
    """Whether a health answer came from the process started as ``name`` (moto's carries no pid: any answer)."""
    if name == "moto" or pid is None:
        return True
    try:
        return resp.json().get("pid") == pid
    except ValueError:
        return False


def log_tail(fleet: dict, name: str, lines: int = 20) -> str:
    try:
        text = (Path(fleet["dir"]) / "logs" / f"{name}.log").read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def running_pids(directory) -> dict[str, int]:
    return {name: p["pid"] for name, p in load_pids(directory).items() if pid_alive(p["pid"])}


def up(
    topology_source,
    directory,
    auth: bool | None = None,
    overrides: dict | None = None,
    timeout: float = HEALTH_TIMEOUT_S,
    owner_pid: int | None = None,
    tls: bool | None = None,
) -> dict:
    """Resolve the topology, start every process, bootstrap tenants, write inventory.yml; returns fleet.json.

    `topology_source` is a name, a path, or an already-loaded topology dict; `overrides` are merged over its
    top-level keys; `auth`/`tls` (when not None) override the topology's. On any failure the processes started so far
    are stopped again. With `owner_pid`, a reaper process stops the fleet when that process dies without calling
    `down` (a killed test run).
    """
    directory = Path(directory).resolve()
    alive = running_pids(directory) if directory.exists() else {}
    if alive:
        raise FleetError(f"a fleet is already running in {directory} (alive: {alive}); run `down` first")
    directory.mkdir(parents=True, exist_ok=True)
    for stale in ("pids.json", "inventory.yml", "tokens.json"):
        (directory / stale).unlink(missing_ok=True)
    topo = dict(topology_source) if isinstance(topology_source, dict) else topology.load_topology(topology_source)
    topo.update(overrides or {})
    fleet = topology.resolve(topo, directory, auth=auth, tls=tls)
    # moto keeps S3 in memory, so disk state left by an earlier fleet in DIR would contradict the new bucket.
    for name in [*node_commands(fleet), "requests", "s3proxy", _tls.TLS_DIR]:
        if (directory / name).is_dir():
            shutil.rmtree(directory / name)
    if fleet["auth"]["enabled"]:
        _auth.generate_keypair(directory)
    if _tls.enabled(fleet):
        _tls.generate_certificates(fleet["tls"], node_names(fleet))
    for sub in ("logs", "requests"):
        (directory / sub).mkdir(exist_ok=True)
    _write_json(directory / "fleet.json", fleet)
    started = time.monotonic()
    try:
        # Everything starts at once: start-up is CPU-bound (imports) and pageservers retry re-attach until the
        # storage controller answers; the bucket exists before bootstrap attaches any tenant.
        names = list(node_commands(fleet))
        for name in names:
            spawn(fleet, name)
        if owner_pid is not None:
            _spawn_reaper(directory, owner_pid)
        wait_healthy(fleet, names, timeout)
        bootstrap.create_bucket(fleet)
        log.info("all %d processes healthy after %.1fs", len(load_pids(directory)), time.monotonic() - started)
        bootstrap.bootstrap(fleet)
        tokens = _auth.service_tokens(fleet["auth"]["private_key_pem_path"]) if fleet["auth"]["enabled"] else None
        if tokens:
            _write_json(directory / "tokens.json", tokens, mode=0o600)
        inventory.write_inventory(fleet, tokens)
    except BaseException:
        try:
            down(directory)
        except FleetError as exc:
            log.error("cleanup after failed up: %s", exc)
        raise
    log.info("fleet up in %.1fs", time.monotonic() - started)
    return fleet


def _spawn_reaper(directory: Path, owner_pid: int) -> None:
    # Recorded in pids.json like the nodes, so `down` stops it.
    argv = [sys.executable, "-m", "neonsim.reaper", "--dir", str(directory), "--owner", str(owner_pid)]
    _spawn_recorded(directory, "reaper", "reaper", argv)


def _signal_group(entry: dict, sig: int) -> None:
    try:
        os.killpg(entry["pgid"], sig)
    except ProcessLookupError:
        pass
    except PermissionError as exc:
        raise FleetError(f"cannot signal process group {entry['pgid']}: {exc}") from exc


def _group_alive(pgid: int) -> bool:
    """Any live (non-zombie) process left in process group pgid."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def stop_processes(directory, names: list[str], sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> None:
    """Signal the named process groups, wait, SIGKILL stragglers, and verify they are gone."""
    pids = load_pids(directory)
    entries = {n: pids[n] for n in names if n in pids}
    for entry in entries.values():
        if pid_alive(entry["pid"]) or _group_alive(entry["pgid"]):
            _signal_group(entry, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in entries.values():
            _reap(entry["pid"])
        if not any(pid_alive(e["pid"]) or _group_alive(e["pgid"]) for e in entries.values()):
            break
        time.sleep(0.05)
    else:
        for name, entry in entries.items():
            if pid_alive(entry["pid"]) or _group_alive(entry["pgid"]):
                log.warning("%s (pid %s) ignored signal %s; killing", name, entry["pid"], sig)
                _signal_group(entry, signal.SIGKILL)
        kill_deadline = time.monotonic() + 5.0
        while time.monotonic() < kill_deadline:
            for entry in entries.values():
                _reap(entry["pid"])
            if not any(pid_alive(e["pid"]) or _group_alive(e["pgid"]) for e in entries.values()):
                break
            time.sleep(0.05)
    left = {n: e["pid"] for n, e in entries.items() if pid_alive(e["pid"]) or _group_alive(e["pgid"])}
    if left:
        raise FleetError(f"processes still alive after stop: {left}")


def down(directory) -> list[str]:
    """Stop every process in pids.json (reaper first, then nodes, S3 last); returns their names."""
    directory = Path(directory).resolve()
    pids = load_pids(directory)
    reaper = [n for n in ("reaper",) if n in pids and pids[n]["pid"] != os.getpid()]
    nodes = [n for n in pids if n not in ("moto", "s3proxy", "reaper")]
    s3_side = [n for n in ("s3proxy", "moto") if n in pids]
    # The reaper first so it cannot start a second `down`; nodes before S3 so they do not log S3 errors.
    try:
        stop_processes(directory, reaper + nodes)
    finally:
        stop_processes(directory, s3_side)
    (directory / "pids.json").unlink(missing_ok=True)
    return nodes + s3_side


def kill(directory, name: str) -> int:
    """SIGKILL one process group (a crash); returns the pid that was killed."""
    pids = load_pids(directory)
    if name not in pids:
        raise FleetError(f"unknown process {name!r}; known: {sorted(pids)}")
    stop_processes(directory, [name], sig=signal.SIGKILL, timeout=5.0)
    return pids[name]["pid"]


def start(directory, name: str, timeout: float = HEALTH_TIMEOUT_S) -> int:
    """(Re)start one process with its fleet.json config and wait until healthy; returns the new pid."""
    fleet = load_fleet(directory)
    if name not in node_commands(fleet):
        raise FleetError(f"unknown process {name!r}")
    current = load_pids(directory).get(name)
    if current and pid_alive(current["pid"]):
        raise FleetError(f"{name} is already running (pid {current['pid']})")
    entry = spawn(fleet, name)
    wait_healthy(fleet, [name], timeout)
    if name == "moto":
        bootstrap.create_bucket(fleet)  # moto keeps S3 in memory: a restarted moto starts empty
    return entry["pid"]


def set_pageserver_prefix(directory, name: str, prefix_in_bucket: str, timeout: float = HEALTH_TIMEOUT_S) -> dict:
    """Reconfigure one pageserver's `remote_storage.prefix_in_bucket`, as an operator edits pageserver.toml and
    restarts it: stop the process, update fleet.json and inventory.yml (`neon_s3_prefix`), start it again.
    Tenants it holds re-attach and read the new prefix. Returns the pageserver's new fleet.json entry."""
    directory = Path(directory).resolve()
    fleet = load_fleet(directory)
    entry = next((p for p in fleet.get("pageservers") or [] if p["name"] == name), None)
    if entry is None:
        raise FleetError(f"unknown pageserver {name!r}")
    if not isinstance(prefix_in_bucket, str) or any(c.isspace() for c in prefix_in_bucket):
        raise FleetError(f"invalid prefix_in_bucket {prefix_in_bucket!r}")
    stop_processes(directory, [name])
    entry["prefix_in_bucket"] = prefix_in_bucket
    _write_json(directory / "fleet.json", fleet)
    tokens = _read_json(directory / "tokens.json", None)
    inventory.write_inventory(fleet, tokens or None)
    start(directory, name, timeout)
    return entry


def s3_request_log(directory) -> list[dict]:
    """Every S3 request the s3proxy forwarded (DIR/s3proxy/requests.jsonl), with its `user_agent`."""
    from neonsim._reqlog import read_request_log

    return read_request_log(Path(directory) / "s3proxy" / "requests.jsonl")


def add_pageserver(
    directory,
    name: str,
    node_id: int | None = None,
    az: str | None = None,
    disk_capacity_bytes: int | None = None,
    prefix_in_bucket: str | None = None,
    register: bool = False,
    timeout: float = HEALTH_TIMEOUT_S,
) -> dict:
    """Add a pageserver to a running fleet: fleet.json and inventory.yml gain it, its process starts; returns its entry.

    The stand-in for a freshly provisioned host. With `register`, its re-attach registers it with the storage
    controller (upstream: metadata.json next to pageserver.toml) and this waits until it is healthy. Without, it is
    left for the caller to register (`POST /control/v1/node`, as the provision_pageserver playbook does): its API
    answers `/v1/status` at once, its tenant map stays 503 (re-attach retried) until the controller knows it.
    """
    directory = Path(directory).resolve()
    fleet = load_fleet(directory)
    storcon = fleet.get("storage_controller")
    if not storcon:
        raise FleetError("add-pageserver needs a fleet with a storage controller (the pageserver's control_plane_api)")
    if _tls.enabled(fleet):
        raise FleetError("add-pageserver: TLS fleets are not supported (the fleet CA's private key is not kept)")
    pids = load_pids(directory)
    if not (storcon["name"] in pids and pid_alive(pids[storcon["name"]]["pid"])):
        raise FleetError(f"the fleet in {directory} is not running (storage controller down); run `up` first")
    known_names = set(node_commands(fleet)) | {"reaper"}
    if not name or not all(c.isalnum() or c in "-_" for c in name) or name in known_names:
        raise FleetError(
            f"name must be new and use letters, digits, '-' or '_': {name!r} (taken: {sorted(known_names)})"
        )
    taken_ids = {n["node_id"] for n in (fleet.get("pageservers") or []) + (fleet.get("safekeepers") or [])}
    if node_id is None:
        node_id = max((i for i in taken_ids if i < topology.SAFEKEEPER_ID_BASE), default=0) + 1
    if isinstance(node_id, bool) or not isinstance(node_id, int) or node_id <= 0 or node_id in taken_ids:
        raise FleetError(
            f"node_id must be a positive integer not in use, got {node_id!r} (in use: {sorted(taken_ids)})"
        )
    capacity = topology.DEFAULT_DISK_CAPACITY if disk_capacity_bytes is None else disk_capacity_bytes
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity <= 0:
        raise FleetError(f"disk_capacity_bytes must be a positive integer, got {disk_capacity_bytes!r}")
    existing = fleet.get("pageservers") or []
    if prefix_in_bucket is None:
        prefix_in_bucket = existing[0]["prefix_in_bucket"] if existing else "pageserver/"
    if az is None:
        az = existing[-1]["az"] if existing else "az-a"
    http_port, pg_port = topology.free_ports(2)
    entry = {
        "name": name,
        "node_id": node_id,
        "http_port": http_port,
        "pg_port": pg_port,
        "az": az,
        "prefix_in_bucket": prefix_in_bucket,
        "disk_capacity_bytes": capacity,
        "self_register": bool(register),
    }
    fleet["pageservers"] = [*existing, entry]
    _write_json(directory / "fleet.json", fleet)
    try:
        spawn(fleet, name)
        if register:
            wait_healthy(fleet, [name], timeout)
        else:
            _wait_status(fleet, entry, timeout)
    except BaseException:
        with contextlib.suppress(FleetError):
            stop_processes(directory, [name])
        fleet["pageservers"] = existing
        _write_json(directory / "fleet.json", fleet)
        raise
    tokens = _read_json(directory / "tokens.json")
    inventory.write_inventory(fleet, tokens or None)
    log.info("added pageserver %s (node %s) on port %s", name, node_id, http_port)
    return entry


def _wait_status(fleet: dict, entry: dict, timeout: float) -> None:
    """Until the node's `GET /v1/status` answers with its id (its tenant map may still wait for re-attach)."""
    url = f"{_tls.api_url(fleet, entry)}/v1/status"
    deadline = time.monotonic() + timeout
    pid = load_pids(fleet["dir"])[entry["name"]]["pid"]
    while True:
        if not pid_alive(pid):
            raise FleetError(f"{entry['name']} exited during start-up:\n{log_tail(fleet, entry['name'])}")
        try:
            answer = requests.get(url, timeout=2, verify=_tls.requests_verify(fleet))
            if answer.status_code == 200 and answer.json().get("id") == entry["node_id"]:
                return
        except (requests.RequestException, ValueError):
            pass
        if time.monotonic() > deadline:
            raise FleetError(f"{entry['name']} did not answer {url} within {timeout:.0f}s")
        time.sleep(0.1)


def status(directory) -> list[dict]:
    """One row per process: name, kind, pid, alive, port, health (HTTP status of its health URL or 'down')."""
    fleet = load_fleet(directory)
    pids = load_pids(directory)
    rows = []
    for name, (kind, _) in node_commands(fleet).items():
        entry = pids.get(name)
        url, port = health_url(fleet, name)
        alive = entry is not None and pid_alive(entry["pid"])
        health = "down"
        if alive:
            try:
                health = str(requests.get(url, timeout=2, verify=_tls.requests_verify(fleet)).status_code)
            except requests.RequestException as exc:
                health = f"error: {type(exc).__name__}"
        rows.append(
            {
                "name": name,
                "kind": kind,
                "pid": entry["pid"] if entry else None,
                "alive": alive,
                "port": port,
                "health": health,
            }
        )
    return rows


def fault(directory, name: str, spec: dict | None) -> dict:
    """POST /sim/fault (spec) or DELETE it (spec None) on a node or the s3proxy."""
    fleet = load_fleet(directory)
    url, _ = health_url(fleet, name)
    if name == "moto":
        raise FleetError("faults go to s3proxy, not moto")
    url = url.replace("/sim/health", "/sim/fault")
    verify = _tls.requests_verify(fleet)
    if spec is None:
        resp = requests.delete(url, timeout=5, verify=verify)
    else:
        resp = requests.post(url, json=spec, timeout=5, verify=verify)
    if resp.status_code != 200:
        raise FleetError(f"fault on {name} failed: HTTP {resp.status_code}: {resp.text}")
    return resp.json()


class SimFleet:
    """A running fleet in a directory, with helpers for tests and demos (see tests/neonsim/conftest.py)."""

    def __init__(self, directory):
        self.dir = Path(directory).resolve()
        self.fleet = load_fleet(self.dir)

    @property
    def inventory_path(self) -> Path:
        return self.dir / "inventory.yml"

    @property
    def tokens(self) -> dict:
        return _read_json(self.dir / "tokens.json", {}) or {}

    def headers(self, service: str) -> dict:
        """Authorization header for pageserver|safekeeper|storcon|compute|generations_api|infra ({} if auth off)."""
        token = self.tokens.get(service)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def entry(self, name: str) -> dict:
        from neonsim._server import find_node

        return find_node(self.fleet, name)[1]

    def url(self, name: str) -> str:
        """A node's API base URL (https:// in a TLS fleet: pass `verify=self.verify`), or the S3 endpoint."""
        if name == "s3proxy":
            return self.fleet["s3"]["endpoint_url"]
        return _tls.api_url(self.fleet, self.entry(name))

    @property
    def tls(self) -> bool:
        return _tls.enabled(self.fleet)

    @property
    def ca_path(self) -> str | None:
        """The fleet CA's PEM file in a TLS fleet, else None."""
        return _tls.ca_path(self.fleet)

    @property
    def verify(self) -> str | bool:
        """`verify=` for `requests` calls to node APIs: the fleet CA in a TLS fleet, else True."""
        return _tls.requests_verify(self.fleet)

    def pg_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.entry(name)['pg_port']}"

    @property
    def storcon_url(self) -> str:
        return self.url(self.fleet["storage_controller"]["name"])

    def request_log(self, name: str) -> list[dict]:
        from neonsim._reqlog import read_request_log

        return read_request_log(self.dir / "requests" / f"{name}.jsonl")

    def pids(self) -> dict:
        return load_pids(self.dir)

    def kill(self, name: str) -> int:
        return kill(self.dir, name)

    def start(self, name: str) -> int:
        return start(self.dir, name)

    def fault(self, name: str, **spec) -> dict:
        return fault(self.dir, name, spec)

    def set_pageserver_prefix(self, name: str, prefix_in_bucket: str) -> dict:
        entry = set_pageserver_prefix(self.dir, name, prefix_in_bucket)
        self.fleet = load_fleet(self.dir)
        return entry

    def s3_request_log(self) -> list[dict]:
        return s3_request_log(self.dir)

    def moto_s3(self):
        """A boto3 S3 client straight to the fleet's moto: not through the s3proxy, so no fault and no log entry."""
        import boto3

        s3 = self.fleet["s3"]
        return boto3.client(
            "s3",
            endpoint_url=s3["moto_url"],
            region_name=s3["region"],
            aws_access_key_id=s3["access_key"],
            aws_secret_access_key=s3["secret_key"],
        )

    def clear_fault(self, name: str) -> dict:
        return fault(self.dir, name, None)

    def status(self) -> list[dict]:
        return status(self.dir)

    def down(self) -> list[str]:
        return down(self.dir)


def start_fleet(
    topology_source,
    directory,
    auth: bool | None = None,
    owner_pid: int | None = None,
    tls: bool | None = None,
    **overrides,
) -> SimFleet:
    """`up` plus one retry with fresh ports if a port was taken between picking and binding it."""
    try:
        up(topology_source, directory, auth=auth, overrides=overrides, owner_pid=owner_pid, tls=tls)
    except FleetError as exc:
        if "address already in use" not in str(exc).lower():
            raise
        log.warning("port collision during up; retrying with fresh ports")
        up(topology_source, directory, auth=auth, overrides=overrides, owner_pid=owner_pid, tls=tls)
    return SimFleet(directory)
