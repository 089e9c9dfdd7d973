#!/usr/bin/env python3
"""Install the collections named in requirements.yml into .collections/.

Galaxy first (short timeout); when it is unreachable, extract the same collections from the PyPI ``ansible``
wheel, which bundles them. The wheel is cached so reruns need no network. A stamp keyed on requirements.yml
and the Python version makes a rerun a no-op.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

REPO_ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = REPO_ROOT / "requirements.yml"
COLLECTIONS_ROOT = REPO_ROOT / ".collections"
STAMP = COLLECTIONS_ROOT / ".neonops-collections.sha256"
GALAXY_TIMEOUT_SECONDS = 60
OWN_COLLECTION = "neonops.storage"


def ansible_wheel_version() -> str:
    """The ``ansible`` release whose bundled collections match our ansible-core for this Python."""
    override = os.environ.get("NEONOPS_ANSIBLE_WHEEL_VERSION")
    if override:
        return override
    return "14.5.0" if sys.version_info >= (3, 12) else "12.3.0"


def wheel_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "neonops-storage" / "wheels"


def read_requirements() -> dict[str, str]:
    data = yaml.safe_load(REQUIREMENTS.read_text()) or {}
    wanted: dict[str, str] = {}
    for entry in data.get("collections") or []:
        if isinstance(entry, str):
            entry = {"name": entry}
        wanted[entry["name"]] = str(entry.get("version", "*"))
    return wanted


def specifier(text: str) -> SpecifierSet:
    """Galaxy version ranges ('*', '1.2.3', '>=1,<2') as a packaging SpecifierSet."""
    parts = [p.strip() for p in text.split(",") if p.strip() and p.strip() != "*"]
    return SpecifierSet(",".join(p if p[0] in "<>=!~" else f"=={p}" for p in parts))


def collection_dir(name: str) -> Path:
    namespace, short = name.split(".", 1)
    return COLLECTIONS_ROOT / "ansible_collections" / namespace / short


def installed_version(name: str) -> str | None:
    manifest = collection_dir(name) / "MANIFEST.json"
    if not manifest.is_file():
        return None
    return json.loads(manifest.read_text())["collection_info"]["version"]


def all_satisfied(wanted: dict[str, str]) -> bool:
    for name, spec in wanted.items():
        version = installed_version(name)
        if version is None or Version(version) not in specifier(spec):
            return False
    return True


def stamp_value() -> str:
    digest = hashlib.sha256(REQUIREMENTS.read_bytes())
    digest.update(f"{sys.version_info[0]}.{sys.version_info[1]}/{ansible_wheel_version()}".encode())
    return digest.hexdigest()


def install_from_galaxy() -> bool:
    galaxy = Path(sys.executable).parent / "ansible-galaxy"
    command = [str(galaxy), "collection", "install", "-r", str(REQUIREMENTS), "-p", str(COLLECTIONS_ROOT)]
    command += ["--timeout", "10"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=GALAXY_TIMEOUT_SECONDS)
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"collections: Galaxy install did not finish ({exc})")
        return False
    if result.returncode != 0:
        last_line = (result.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"collections: Galaxy unreachable or failed ({last_line.strip()}); using the PyPI ansible wheel")
        return False
    return True


def ansible_wheel() -> Path:
    version = ansible_wheel_version()
    cache = wheel_cache_dir()
    wheel = cache / f"ansible-{version}-py3-none-any.whl"
    if wheel.is_file() and zipfile.is_zipfile(wheel):
        return wheel
    cache.mkdir(parents=True, exist_ok=True)
    print(f"collections: downloading ansible=={version} wheel into {cache}")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--disable-pip-version-check"]
        + ["-d", str(cache), f"ansible=={version}"],
        check=True,
    )
    if not wheel.is_file():
        sys.exit(f"collections: pip did not produce {wheel}")
    return wheel


def install_from_wheel(wanted: dict[str, str]) -> None:
    wheel = ansible_wheel()
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        pending = list(wanted.items())
        done: set[str] = set()
        while pending:
            name, spec = pending.pop(0)
            if name in done or name == OWN_COLLECTION:
                continue
            done.add(name)
            namespace, short = name.split(".", 1)
            prefix = f"ansible_collections/{namespace}/{short}/"
            manifest_name = prefix + "MANIFEST.json"
            if manifest_name not in names:
                sys.exit(f"collections: {name} is not bundled in {wheel.name}; install it from Galaxy")
            manifest = json.loads(archive.read(manifest_name))["collection_info"]
            if Version(manifest["version"]) not in specifier(spec):
                sys.exit(f"collections: {wheel.name} bundles {name} {manifest['version']}, need {spec}")
            target = collection_dir(name)
            shutil.rmtree(target, ignore_errors=True)
            for member in names:
                if member.startswith(prefix) and not member.endswith("/"):
                    archive.extract(member, COLLECTIONS_ROOT)
            print(f"collections: installed {name} {manifest['version']} from {wheel.name}")
            pending.extend((dep, dep_spec) for dep, dep_spec in (manifest.get("dependencies") or {}).items())


def main() -> int:
    wanted = read_requirements()
    wanted.pop(OWN_COLLECTION, None)
    if STAMP.is_file() and STAMP.read_text().strip() == stamp_value() and all_satisfied(wanted):
        print("deps: collections up to date")
        return 0
    COLLECTIONS_ROOT.mkdir(parents=True, exist_ok=True)
    offline = os.environ.get("NEONOPS_COLLECTIONS_OFFLINE") == "1"
    if offline or not install_from_galaxy() or not all_satisfied(wanted):
        install_from_wheel(wanted)
    if not all_satisfied(wanted):
        sys.exit("collections: requirements.yml is still not satisfied after installing")
    STAMP.write_text(stamp_value() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
