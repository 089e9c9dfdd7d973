"""neonops.storage.s3_tenant_copy against `aws s3 sync`, on one moto server and the same objects.

A tenant in Neon's key layout under `src/` (LAYERS small layer files, BIG multi-MiB ones, an index_part that
references all of them, a heatmap), copied to a fresh prefix by each tool: the module as Ansible runs it (an ad-hoc
`ansible localhost -m neonops.storage.s3_tenant_copy`, verification included: every object's size and ETag and
every layer the index_part references), and `aws s3 sync` from its own venv (awscli pins another botocore than
boto3's; the venv is created in build/awscli-venv when missing, and the case is skipped with the reason when pip
cannot install it). Then each again with nothing to copy. Wall time of each, and the ratios, in one run.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
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


def layer_name(n: int) -> str:
    # A delta layer file name (upstream pageserver/src/tenant/storage_layer/layer_name.rs).
    return f"{'0' * 36}-{'F' * 36}__{n:016X}-{n + 1:016X}"


def populate(client, layers: int, layer_bytes: int, big: int, big_bytes: int) -> dict:
    """The source tenant; returns its figures."""
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
        client.put_object(Bucket=BUCKET, Key=key, Body=os.urandom(size))

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, objects.items()))
    index = json.dumps({"version": 15, "layer_metadata": meta}).encode()
    client.put_object(Bucket=BUCKET, Key=f"{base}/index_part.json-00000001", Body=index)
    client.put_object(Bucket=BUCKET, Key=f"src/tenants/{TENANT}/heatmap-v1.json", Body=b'{"timelines": []}')
    return {"objects": len(objects) + 2, "bytes": sum(objects.values()) + len(index) + 17}


def run_module(endpoint: str, dest_prefix: str, tmp: Path) -> tuple[float, dict]:
    args = {
        "bucket": BUCKET,
        "prefix_in_bucket": "src/",
        "dest_prefix_in_bucket": dest_prefix,
        "tenant_id": TENANT,
        "endpoint_url": endpoint,
        "region": "us-east-1",
        "access_key": "testing",
        "secret_key": "testing",
    }
    env = _env()
    env.update(
        ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"),
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_HOME=str(tmp / "ansible-home"),
        ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"),
    )
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


def run_sync(aws: str, endpoint: str, dest_prefix: str) -> tuple[float, str]:
    cmd = [
        aws,
        "s3",
        "sync",
        f"s3://{BUCKET}/src/tenants/{TENANT}/",
        f"s3://{BUCKET}/{dest_prefix}/tenants/{TENANT}/",
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


def count(client, prefix: str) -> int:
    total = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        total += len(page.get("Contents", []))
    return total


def bench(work: Path, layers: int = 5000, layer_bytes: int = 2048, big: int = 3, big_bytes: int = 8 << 20) -> dict:
    import boto3
    from botocore.config import Config

    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_env(),
    )
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
                client.create_bucket(Bucket=BUCKET)
                break
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
        source = populate(client, layers, layer_bytes, big, big_bytes)
        aws, why_not = awscli()
        out = {
            "source": source,
            "layers": layers,
            "layer_bytes": layer_bytes,
            "big": big,
            "big_bytes": big_bytes,
            "awscli": why_not or subprocess.run([aws, "--version"], capture_output=True, text=True).stdout.strip(),
            "load_before": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        }
        # Interleaved: sync first copy, module first copy, sync rerun, module rerun.
        if aws:
            out["sync_first"], _ = run_sync(aws, endpoint, "dst-sync")
            out["sync_first_objects"] = count(client, f"dst-sync/tenants/{TENANT}/")
        out["module_first"], first = run_module(endpoint, "dst-module", work)
        if aws:
            out["sync_rerun"], _ = run_sync(aws, endpoint, "dst-sync")
        out["module_rerun"], rerun = run_module(endpoint, "dst-module", work)
        out["module_first_result"] = {k: first.get(k) for k in ("copied", "verified", "layers_checked", "seconds")}
        out["module_rerun_result"] = {k: rerun.get(k) for k in ("copied", "identical", "verified", "layers_checked")}
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
    return "\n".join(lines) + "\n"
