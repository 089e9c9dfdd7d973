"""neonops.storage.s3_tenant_copy against `aws s3 sync`, on one moto server and the same objects.

A tenant in Neon's key layout under `src/` (LAYERS small layer files, BIG multi-MiB ones, an index_part that
references all of them, a heatmap), copied to a fresh prefix by each tool: the module as Ansible runs it (an ad-hoc
`ansible localhost -m neonops.storage.s3_tenant_copy`, verification included: every object's size and ETag and
every layer the index_part references), and `aws s3 sync` from its own venv (awscli pins another botocore than
boto3's; the venv is created in build/awscli-venv when missing, and the case is skipped with the reason when pip
cannot install it). Then each again with nothing to copy. Wall time of each, and the ratios, in one run.

Each tool works in its own bucket holding the same source objects (the same keys and bytes): moto scans every key
of a bucket for each ListObjectsV2 page, so a tool listing a bucket that already holds the other tool's copy would
pay for it. For every run it also records what the server did: the S3 requests by operation (from moto's request
log), the moto process's CPU seconds (/proc/<pid>/stat) and the client's (the tool's process tree, from
getrusage(RUSAGE_CHILDREN)). A server whose CPU time is close to the wall time is the bottleneck.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# moto's request log (werkzeug): 127.0.0.1 - - [date] "GET /bucket/key?query HTTP/1.1" 200 -
REQUEST_LINE = re.compile(r'"([A-Z]+) (/[^ ]*) HTTP/[0-9.]+" (\d{3})')
AWSCLI_VENV = REPO / "build" / "awscli-venv"
BUCKET = "neon-bench"
TENANT = "3aa8fcc61f6d357410b7de754b1d9001"
TIMELINE = "de200bd42b49cc1814412c7e592dd6e9"
KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(KEYS)
    env.update(AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    return env


def awscli() -> tuple[str | None, str]:
    """The aws executable of build/awscli-venv (created when missing), or None and why not."""
    aws = AWSCLI_VENV / "bin" / "aws"
    if aws.exists():
        return str(aws), ""
    try:
        subprocess.run([sys.executable, "-m", "venv", str(AWSCLI_VENV)], check=True, capture_output=True, timeout=300)
        subprocess.run(
            [str(AWSCLI_VENV / "bin" / "pip"), "install", "-q", "awscli"], check=True, capture_output=True, timeout=900
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        out = getattr(exc, "stderr", b"") or b""
        shutil.rmtree(AWSCLI_VENV, ignore_errors=True)
        return None, f"pip could not install awscli into {AWSCLI_VENV}: {exc} {out.decode(errors='replace')[-300:]}"
    return (str(aws), "") if aws.exists() else (None, "awscli installed no `aws` executable")


def operation(method: str, target: str) -> str:
    """The S3 operation of a request line of moto's log (path-style: /bucket or /bucket/key). The log has no headers,
    so a PUT of a key is counted as CopyObject: nobody uploads (PutObject) while a tool runs."""
    path, _, query = target.partition("?")
    params = {part.split("=", 1)[0] for part in query.split("&") if part}
    on_key = "/" in path.strip("/")
    if method == "GET" and not on_key:
        return "ListObjectsV2" if "list-type" in params else "ListObjects" if not params - {"prefix"} else "GET bucket"
    if method == "PUT" and on_key:
        return "UploadPartCopy" if "partNumber" in params else "CopyObject"
    if method == "POST" and on_key:
        return "CreateMultipartUpload" if "uploads" in params else "CompleteMultipartUpload"
    if method == "DELETE" and "uploadId" in params:
        return "AbortMultipartUpload"
    return {"GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}.get(method, method) + (
        "" if on_key else " bucket"
    )


class ServerProbe:
    """What the moto server does during one run: requests by operation (its log from a byte offset) and its CPU."""

    def __init__(self, pid: int, log: Path):
        self.pid, self.log = pid, log

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime (fields 14 and 15)

    def start(self) -> tuple[int, float]:
        return self.log.stat().st_size, self.cpu()

    def since(self, mark: tuple[int, float]) -> dict:
        time.sleep(0.2)  # the last request's log line
        offset, cpu = mark
        ops: dict[str, int] = {}
        errors = 0
        with self.log.open("rb") as f:
            f.seek(offset)
            for line in f.read().decode(errors="replace").splitlines():
                match = REQUEST_LINE.search(line)
                if match:
                    method, target, status = match.groups()
                    name = operation(method, target)
                    ops[name] = ops.get(name, 0) + 1
                    errors += not status.startswith("2")
        return {"requests": dict(sorted(ops.items())), "errors": errors, "server_cpu": self.cpu() - cpu - 0.0}


def run_measured(probe: ServerProbe, run) -> dict:
    """``run() -> (seconds, result)`` with the server's requests and CPU and the client's CPU over it."""
    mark = probe.start()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds, result = run()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = probe.since(mark)
    out.update(
        seconds=round(seconds, 2),
        server_cpu=round(out["server_cpu"], 2),
        client_cpu=round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2),
        result=result,
    )
    return out


def layer_name(n: int) -> str:
    # A delta layer file name (upstream pageserver/src/tenant/storage_layer/layer_name.rs).
    return f"{'0' * 36}-{'F' * 36}__{n:016X}-{n + 1:016X}"


def populate(client, buckets: list[str], layers: int, layer_bytes: int, big: int, big_bytes: int) -> dict:
    """The source tenant, the same keys and bytes in each bucket; returns its figures."""
    base = f"src/tenants/{TENANT}/timelines/{TIMELINE}"
    objects = {}
    meta = {}
    for i in range(layers + big):
        size = layer_bytes if i < layers else big_bytes
        name = layer_name(0x1000 + 16 * i)
        objects[f"{base}/{name}-00000001"] = size
        meta[name] = {"file_size": size, "generation": 1}

    def put(item):
        key, size = item
        body = os.urandom(size)
        for bucket in buckets:
            client.put_object(Bucket=bucket, Key=key, Body=body)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, objects.items()))
    index = json.dumps({"version": 15, "layer_metadata": meta}).encode()
    for bucket in buckets:
        client.put_object(Bucket=bucket, Key=f"{base}/index_part.json-00000001", Body=index)
        client.put_object(Bucket=bucket, Key=f"src/tenants/{TENANT}/heatmap-v1.json", Body=b'{"timelines": []}')
    return {"objects": len(objects) + 2, "bytes": sum(objects.values()) + len(index) + 17}


def ansible_env(tmp: Path) -> dict:
    env = _env()
    env.update(
        ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"),
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_HOME=str(tmp / "ansible-home"),
        ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"),
    )
    return env


def run_ping(tmp: Path) -> tuple[float, str]:
    """Ansible's own cost of one ad-hoc module run (`ansible localhost -m ping`): the floor of any module's time."""
    cmd = [str(Path(sys.executable).parent / "ansible"), "localhost", "-i", "localhost,", "-c", "local", "-m", "ping"]
    started = time.monotonic()
    proc = subprocess.run(cmd, env=ansible_env(tmp), capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(
            f"ansible -m ping failed (rc {proc.returncode}): {proc.stdout[-2000:]} {proc.stderr[-2000:]}"
        )
    return seconds, ""


def run_module(endpoint: str, bucket: str, dest_prefix: str, tmp: Path) -> tuple[float, dict]:
    args = {
        "bucket": bucket,
        "prefix_in_bucket": "src/",
        "dest_prefix_in_bucket": dest_prefix,
        "tenant_id": TENANT,
        "endpoint_url": endpoint,
        "region": "us-east-1",
        "access_key": "testing",
        "secret_key": "testing",
    }
    env = ansible_env(tmp)
    cmd = [
        str(Path(sys.executable).parent / "ansible"),
        "localhost",
        "-i",
        "localhost,",
        "-c",
        "local",
        "-m",
        "neonops.storage.s3_tenant_copy",
        "-a",
        json.dumps(args),
    ]
    started = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"s3_tenant_copy failed (rc {proc.returncode}): {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
    # ad-hoc output: "localhost | CHANGED => {result as JSON}"
    if "=>" not in proc.stdout:
        raise RuntimeError(f"s3_tenant_copy: no result in {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.split("=>", 1)[1])
    return seconds, result


def run_sync(aws: str, endpoint: str, bucket: str, dest_prefix: str) -> tuple[float, str]:
    cmd = [
        aws,
        "s3",
        "sync",
        f"s3://{bucket}/src/tenants/{TENANT}/",
        f"s3://{bucket}/{dest_prefix}/tenants/{TENANT}/",
        "--endpoint-url",
        endpoint,
        "--only-show-errors",
    ]
    started = time.monotonic()
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=3600)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"aws s3 sync failed (rc {proc.returncode}): {proc.stderr[-2000:]}")
    return seconds, proc.stdout


def count(client, bucket: str, prefix: str) -> int:
    total = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        total += len(page.get("Contents", []))
    return total


def bench(work: Path, layers: int = 5000, layer_bytes: int = 2048, big: int = 3, big_bytes: int = 8 << 20) -> dict:
    import boto3
    from botocore.config import Config

    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    moto_log = work / "moto.log"
    with moto_log.open("wb") as log:
        moto = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=_env(),
        )
    buckets = {"sync": f"{BUCKET}-sync", "module": f"{BUCKET}-module"}
    try:
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(max_pool_connections=32, retries={"max_attempts": 10, "mode": "standard"}),
        )
        deadline = time.time() + 60
        while True:
            try:
                client.create_bucket(Bucket=buckets["sync"])
                break
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
        client.create_bucket(Bucket=buckets["module"])
        source = populate(client, list(buckets.values()), layers, layer_bytes, big, big_bytes)
        aws, why_not = awscli()
        probe = ServerProbe(moto.pid, moto_log)
        out: dict = {
            "source": source,
            "layers": layers,
            "layer_bytes": layer_bytes,
            "big": big,
            "big_bytes": big_bytes,
            "awscli": why_not or subprocess.run([aws, "--version"], capture_output=True, text=True).stdout.strip(),
            "load_before": " ".join(f"{x:.1f}" for x in os.getloadavg()),
            "runs": {},
        }
        runs = out["runs"]
        runs["ansible_ping"] = run_measured(probe, lambda: run_ping(work))
        # Interleaved: sync first copy, module first copy, sync rerun, module rerun.
        if aws:
            runs["sync_first"] = run_measured(probe, lambda: run_sync(aws, endpoint, buckets["sync"], "dst"))
            out["sync_first_objects"] = count(client, buckets["sync"], f"dst/tenants/{TENANT}/")
        runs["module_first"] = run_measured(probe, lambda: run_module(endpoint, buckets["module"], "dst", work))
        if aws:
            runs["sync_rerun"] = run_measured(probe, lambda: run_sync(aws, endpoint, buckets["sync"], "dst"))
        runs["module_rerun"] = run_measured(probe, lambda: run_module(endpoint, buckets["module"], "dst", work))
        for key in ("sync_first", "module_first", "sync_rerun", "module_rerun"):
            if key in runs:
                out[key] = runs[key]["seconds"]
        first, rerun = runs["module_first"].pop("result"), runs["module_rerun"].pop("result")
        for run in runs.values():
            run.pop("result", None)
        out["module_first_result"] = {k: first.get(k) for k in ("copied", "verified", "layers_checked", "seconds")}
        out["module_rerun_result"] = {
            k: rerun.get(k) for k in ("copied", "identical", "verified", "layers_checked", "seconds")
        }
        out["load_after"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
        return out
    finally:
        moto.terminate()
        try:
            moto.wait(timeout=30)
        except subprocess.TimeoutExpired:
            moto.kill()


def render(r: dict, when: str, machine: str) -> str:
    def ratio(a, b):
        return f"{a / b:.2f}x" if a and b else "-"

    lines = [
        "## S3 tenant copy: s3_tenant_copy against aws s3 sync",
        "",
        f"`make bench` (`benchmarks/s3copy.py`), {when}, {machine}; load average {r['load_before']} before, "
        f"{r['load_after']} after. One moto server (its own process); the same source: {r['layers']} layer files "
        f"of {r['layer_bytes']} bytes and {r['big']} of {r['big_bytes'] >> 20} MiB under one tenant's key layout, "
        f"plus its index_part and heatmap ({r['source']['objects']} objects, {r['source']['bytes']} bytes). "
        "Each tool copies to its own fresh prefix, then runs again with nothing to copy. s3_tenant_copy runs as "
        "Ansible runs it (`ansible localhost -m neonops.storage.s3_tenant_copy`, defaults: 16 copies in flight) and "
        "its time includes verification (every object's size and ETag at the destination, every layer the "
        f"index_part references: {r['module_first_result'].get('layers_checked')} references). aws s3 sync: "
        f"{r['awscli']}, default settings (10 requests in flight), no verification.",
        "",
        "| run | aws s3 sync s | s3_tenant_copy s | sync / module |",
        "|---|---|---|---|",
    ]
    for label, key in (("first copy", "first"), ("no-op rerun", "rerun")):
        sync, module = r.get(f"sync_{key}"), r.get(f"module_{key}")
        lines.append(
            f"| {label} | {sync:.2f} | {module:.2f} | {ratio(sync, module)} |"
            if sync
            else f"| {label} | skipped | {module:.2f} | - |"
        )
    first, rerun = r["module_first_result"], r["module_rerun_result"]
    lines += [
        "",
        f"s3_tenant_copy first run: copied {first['copied']['objects']} objects ({first['copied']['bytes']} bytes, "
        f"{first['copied']['multipart']} multipart), verified {first['verified']['objects']}; module-reported "
        f"{first['seconds']} s inside the process. Rerun: copied {rerun['copied']['objects']}, left "
        f"{rerun['identical']['objects']} identical objects alone, verified {rerun['verified']['objects']}."
        + (f" aws s3 sync wrote {r['sync_first_objects']} objects." if r.get("sync_first_objects") else ""),
    ]
    if not r.get("sync_first"):
        lines += ["", f"aws s3 sync skipped: {r['awscli']}"]
    lines += [
        "",
        "What the server did in each run: S3 requests by operation (moto's request log), the moto process's CPU "
        "seconds against the run's wall time, and the client's CPU seconds (the tool's whole process tree: Ansible "
        "and its module, or aws). Each tool has its own bucket with the same source, so both list buckets of the "
        "same size.",
        "",
        "| run | wall s | S3 requests | moto CPU s | moto CPU / wall | client CPU s |",
        "|---|---|---|---|---|---|",
    ]
    labels = {
        "ansible_ping": "`ansible -m ping` (Ansible's own cost)",
        "sync_first": "aws s3 sync, first copy",
        "module_first": "s3_tenant_copy, first copy",
        "sync_rerun": "aws s3 sync, no-op rerun",
        "module_rerun": "s3_tenant_copy, no-op rerun",
    }
    for key, label in labels.items():
        run = r.get("runs", {}).get(key)
        if not run:
            continue
        ops = ", ".join(f"{name} {n}" for name, n in run["requests"].items()) or "none"
        errors = f" ({run['errors']} errors)" if run["errors"] else ""
        share = run["server_cpu"] / run["seconds"] if run["seconds"] else 0
        lines.append(
            f"| {label} | {run['seconds']:.2f} | {ops}{errors} | {run['server_cpu']:.2f} | {share:.2f} | "
            f"{run['client_cpu']:.2f} |"
        )
    return "\n".join(lines) + "\n"
