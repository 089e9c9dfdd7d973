from __future__ import annotations

import json

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args
from ansible_collections.neonops.storage.plugins.module_utils._client import NeonAPIError
from ansible_collections.neonops.storage.plugins.module_utils._module import (
    NEON_CONNECTION_SPEC,
    client_from_module,
    fail_api,
    neon_argument_spec,
)
from ansible_collections.neonops.storage.tests.unit.conftest import SECRET_TOKEN


def make_module(args):
    with patch_module_args(args):
        return AnsibleModule(argument_spec=neon_argument_spec(extra={"type": "str"}), supports_check_mode=True)


def test_argument_spec_merges_and_does_not_share_state():
    spec = neon_argument_spec(extra={"type": "str"})
    assert set(spec) == set(NEON_CONNECTION_SPEC) | {"extra"}
    assert spec["api_token"]["no_log"] is True
    spec["api_url"]["required"] = False
    assert NEON_CONNECTION_SPEC["api_url"]["required"] is True


def test_defaults_and_client_settings():
    module = make_module({"api_url": "https://ps:9898", "api_token": SECRET_TOKEN})
    client = client_from_module(module)
    assert client.base_url == "https://ps:9898"
    assert client.timeout == 30.0
    assert client.session.verify is True
    assert client.session.headers["Authorization"] == f"Bearer {SECRET_TOKEN}"


def test_environment_fallbacks(monkeypatch):
    monkeypatch.setenv("NEONOPS_API_URL", "https://env-ps:9898")
    monkeypatch.setenv("NEONOPS_API_TOKEN", SECRET_TOKEN)
    monkeypatch.setenv("NEONOPS_VALIDATE_CERTS", "false")
    monkeypatch.setenv("NEONOPS_CA_PATH", "/etc/neon/ca.pem")
    monkeypatch.setenv("NEONOPS_TIMEOUT", "7.5")
    module = make_module({})
    client = client_from_module(module)
    assert client.base_url == "https://env-ps:9898"
    assert client.timeout == 7.5
    assert client.session.verify is False
    assert module.params["ca_path"] == "/etc/neon/ca.pem"


def test_ca_path_is_used_for_verification(tmp_path):
    ca_path = tmp_path / "ca.pem"
    ca_path.write_text("")
    client = client_from_module(make_module({"api_url": "https://ps:9898", "ca_path": str(ca_path)}))
    assert client.session.verify == str(ca_path)


def run_and_capture(capsys, args, func):
    """Build the module and call func(module) inside the args context (fail_json needs it)."""
    with patch_module_args(args), pytest.raises(SystemExit):
        module = AnsibleModule(argument_spec=neon_argument_spec(), supports_check_mode=True)
        func(module)
    return json.loads(capsys.readouterr().out)


def test_bad_url_and_timeout_fail_json(capsys):
    result = run_and_capture(capsys, {"api_url": "ps:9898"}, client_from_module)
    assert result["failed"] and result["msg"].startswith("api_url: invalid API URL 'ps:9898'")
    result = run_and_capture(capsys, {"api_url": "http://ps:9898", "timeout": 0}, client_from_module)
    assert result["msg"] == "timeout: must be a positive number of seconds, got 0.0"


def test_fail_api_reports_request_without_token(capsys):
    args = {"api_url": "http://ps:9898", "api_token": SECRET_TOKEN}
    exc = NeonAPIError("PUT", "http://ps:9898/v1/x", 409, "Conflict: busy", {"msg": "Conflict: busy"})
    result = run_and_capture(capsys, args, lambda m: fail_api(m, exc, "set location", reason="slot busy", extra=1))
    assert result["msg"] == "set location failed: slot busy (PUT http://ps:9898/v1/x: HTTP 409: Conflict: busy)"
    assert (result["method"], result["status"], result["error"], result["extra"]) == ("PUT", 409, "Conflict: busy", 1)
    assert SECRET_TOKEN not in json.dumps(result)
