"""Unit-test harness for neonops.storage: a fake API server and a module runner.

Run with ``PYTHONPATH=.collections .venv/bin/pytest tests/unit``.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.neonops.storage.tests.unit.fake_api import FakeAPI

# Recognisable so a test can grep a whole module output for it.
SECRET_TOKEN = "tok3n-SHOULD-NEVER-LEAK-7f1c2d"
TENANT_ID = "1f359dd625e519a1a4e8d7509690f6fc"
TIMELINE_ID = "de200bd42b49cc1814412c7e592dd6e9"
TIMELINE_ID_2 = "3a7c2b6e1d0f4c8a9b5e6d7f8a9b0c1d"


@pytest.fixture(autouse=True)
def _isolate_environment(monkeypatch):
    """The connection options fall back to NEONOPS_* variables: keep the developer's environment out."""
    for suffix in ("API_URL", "API_TOKEN", "VALIDATE_CERTS", "CA_PATH", "TIMEOUT"):
        monkeypatch.delenv(f"NEONOPS_{suffix}", raising=False)


@pytest.fixture
def fake_api():
    api = FakeAPI()
    yield api
    api.close()


@pytest.fixture
def fake_api_factory():
    """Several independent fake servers (e.g. a source pageserver and safekeepers)."""
    servers = []

    def make() -> FakeAPI:
        servers.append(FakeAPI())
        return servers[-1]

    yield make
    for server in servers:
        server.close()


@dataclass
class ModuleRun:
    result: dict
    raw: str  # the module's whole JSON output, for leak checks
    exit_code: int

    @property
    def failed(self) -> bool:
        return bool(self.result.get("failed"))

    @property
    def changed(self) -> bool:
        return bool(self.result.get("changed"))

    @property
    def warnings(self) -> list[str]:
        """Warning texts; ansible-core >= 2.19 emits structured warnings, older cores plain strings."""
        texts = []
        for warning in self.result.get("warnings") or []:
            if isinstance(warning, dict):
                warning = (warning.get("event") or warning).get("msg", "")
            texts.append(warning)
        return texts

    def __getitem__(self, key):
        return self.result[key]

    def get(self, key, default=None):
        return self.result.get(key, default)


@contextlib.contextmanager
def _module_side_warnings():
    """Make module.warn() land in the result, as on a target host.

    Importing controller code (ansible.errors, filter plugins) in the same pytest process flips
    ``is_controller`` and would send warnings to Display instead; the warning store is also process-global.
    """
    try:
        import ansible.module_utils._internal as internal
        from ansible.module_utils.common import warnings as warnings_store
    except ImportError:  # ansible-core < 2.19 has neither
        yield
        return
    saved = internal.is_controller
    internal.is_controller = False
    warnings_store._global_warnings.clear()
    warnings_store._global_deprecations.clear()
    try:
        yield
    finally:
        internal.is_controller = saved


@pytest.fixture
def run_module(capsys):
    """Run a module's ``main()`` with ``args``; returns a ModuleRun (result dict + raw JSON output)."""

    def _run(module, args: dict, check_mode: bool = False, diff: bool = False) -> ModuleRun:
        module_args = dict(args)
        if check_mode:
            module_args["_ansible_check_mode"] = True
        if diff:
            module_args["_ansible_diff"] = True
        capsys.readouterr()
        with patch_module_args(module_args), _module_side_warnings(), pytest.raises(SystemExit) as exit_info:
            module.main()
        raw = capsys.readouterr().out
        return ModuleRun(json.loads(raw), raw, exit_info.value.code or 0)

    return _run
