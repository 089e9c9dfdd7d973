"""Tests for the repository tooling itself: the collection installer and the pytest suite runner."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import zipfile
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent


def load_installer():
    spec = importlib.util.spec_from_file_location("install_collections", SCRIPTS / "install_collections.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def installer(tmp_path, monkeypatch):
    module = load_installer()
    monkeypatch.setattr(module, "COLLECTIONS_ROOT", tmp_path / "collections")
    monkeypatch.setattr(module, "wheel_cache_dir", lambda: tmp_path / "cache")
    monkeypatch.setenv("NEONOPS_ANSIBLE_WHEEL_VERSION", "0.0.1")
    return module


def write_fake_ansible_wheel(installer, collections: dict[str, tuple[str, dict]]) -> Path:
    """A stand-in for the PyPI ansible wheel: {name: (version, dependencies)} as bundled collections."""
    cache = installer.wheel_cache_dir()
    cache.mkdir(parents=True)
    wheel = cache / "ansible-0.0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, (version, dependencies) in collections.items():
            namespace, short = name.split(".")
            prefix = f"ansible_collections/{namespace}/{short}/"
            info = {"collection_info": {"namespace": namespace, "name": short, "version": version}}
            info["collection_info"]["dependencies"] = dependencies
            archive.writestr(prefix + "MANIFEST.json", json.dumps(info))
            archive.writestr(prefix + "plugins/modules/thing.py", "# module\n")
        archive.writestr("ansible_collections/other/unrelated/MANIFEST.json", "{}")
    return wheel


@pytest.mark.parametrize(
    ("text", "version", "expected"),
    [
        ("*", "0.0.1", True),
        (">=10.0.0", "11.4.0", True),
        (">=10.0.0", "9.5.0", False),
        ("10.1.2", "10.1.2", True),
        ("10.1.2", "10.1.3", False),
        (">=10.0.0,<11.0.0", "11.4.0", False),
    ],
)
def test_galaxy_version_ranges(installer, text, version, expected):
    assert (installer.Version(version) in installer.specifier(text)) is expected


def test_wheel_fallback_extracts_requested_collections_and_their_dependencies(installer):
    write_fake_ansible_wheel(
        installer, {"amazon.aws": ("11.4.0", {"community.dep": ">=1.0.0"}), "community.dep": ("1.2.0", {})}
    )
    installer.install_from_wheel({"amazon.aws": ">=10.0.0"})

    root = installer.COLLECTIONS_ROOT / "ansible_collections"
    assert (root / "amazon/aws/plugins/modules/thing.py").is_file()
    assert installer.installed_version("community.dep") == "1.2.0"
    assert not (root / "other").exists()
    assert installer.all_satisfied({"amazon.aws": ">=10.0.0", "community.dep": "*"})


def test_wheel_fallback_refuses_a_bundled_version_outside_the_range(installer):
    write_fake_ansible_wheel(installer, {"amazon.aws": ("9.0.0", {})})
    with pytest.raises(SystemExit, match="need >=10.0.0"):
        installer.install_from_wheel({"amazon.aws": ">=10.0.0"})


def test_wheel_fallback_names_a_collection_the_wheel_lacks(installer):
    write_fake_ansible_wheel(installer, {"amazon.aws": ("11.4.0", {})})
    with pytest.raises(SystemExit, match="not bundled"):
        installer.install_from_wheel({"ansible.posix": "*"})


def run_suite(directory: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SCRIPTS / "run-pytest-suite.sh"), str(directory), "-q", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
    )


def test_suite_runner_skips_a_missing_suite(tmp_path):
    result = run_suite(tmp_path / "absent")
    assert result.returncode == 0
    assert "skipped" in result.stdout


def test_suite_runner_treats_no_collected_tests_as_a_skip(tmp_path):
    (tmp_path / "test_empty.py").write_text("HELPER = 1\n")
    result = run_suite(tmp_path)
    assert result.returncode == 0
    assert "no tests collected" in result.stdout


def test_suite_runner_propagates_a_failing_test(tmp_path):
    (tmp_path / "test_fails.py").write_text("def test_fails():\n    assert 1 == 2\n")
    result = run_suite(tmp_path)
    assert result.returncode == 1
    assert "1 failed" in result.stdout


def test_suite_runner_propagates_a_collection_error(tmp_path):
    (tmp_path / "test_broken.py").write_text("import module_that_does_not_exist\n")
    result = run_suite(tmp_path)
    assert result.returncode not in (0, 5)
