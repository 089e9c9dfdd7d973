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
    neon_module,
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
    assert result["msg"] == "timeout: must be more than 0 and at most 86400 seconds, got 0.0"


def test_fail_api_reports_request_without_token(capsys):
    args = {"api_url": "http://ps:9898", "api_token": SECRET_TOKEN}
    exc = NeonAPIError("PUT", "http://ps:9898/v1/x", 409, "Conflict: busy", {"msg": "Conflict: busy"})
    result = run_and_capture(capsys, args, lambda m: fail_api(m, exc, "set location", reason="slot busy", extra=1))
    assert result["msg"] == "set location failed: slot busy (PUT http://ps:9898/v1/x: HTTP 409: Conflict: busy)"
    assert (result["method"], result["status"], result["error"], result["extra"]) == ("PUT", 409, "Conflict: busy", 1)
    assert SECRET_TOKEN not in json.dumps(result)


# ---- neon_module: one set of option rules for every module (issue 9) --------------------------------------------

EXTRA_SPEC = {
    "count": {"type": "int"},
    "seconds": {"type": "float"},
    "name": {"type": "str"},
    "conf": {"type": "dict"},
    "items": {"type": "list", "elements": "dict", "options": {"node_id": {"type": "int"}, "url": {"type": "str"}}},
    "generation": {"type": "int"},
    "port": {"type": "int", "aliases": ["p"]},
    "settings": {
        "type": "dict",
        "options": {"wait": {"type": "float"}, "nested": {"type": "dict", "options": {"n": {"type": "int"}}}},
    },
}


def run_neon_module(capsys, args, func=None):
    """Build a neon_module (which may fail on its own) and call func(module); the parsed result."""
    with patch_module_args({"api_url": "http://ps:9898", **args}), pytest.raises(SystemExit):
        module = neon_module(argument_spec=neon_argument_spec(**EXTRA_SPEC), supports_check_mode=True)
        (func or (lambda m: m.exit_json(changed=False)))(module)
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"count": True}, "count: must be an integer, got the boolean True"),
        ({"generation": True}, "generation: must be an integer, got the boolean True"),
        ({"generation": 1 << 32}, "generation: must be an integer from 0 to 4294967295"),
        ({"count": -1}, "count: must be an integer from 0 to"),
        ({"count": 1e30}, "count: must be an integer from 0 to"),
        ({"retries": -1}, "retries: must be an integer from 0 to 100"),
        ({"seconds": "nan"}, "seconds: must be a finite number"),
        ({"timeout": "inf"}, "timeout: must be a finite number seconds"),
        ({"timeout": 1e10}, "timeout: must be more than 0 and at most 86400 seconds"),
        ({"name": "a\x00b"}, "name: contains a NUL character"),
        ({"name": "x" * 5000}, "name: is 5000 characters long, more than the 4096 allowed"),
        ({"api_token": "t" * 70000}, "api_token: is 70000 characters long"),
        ({"conf": {"k": float("nan")}}, "conf: contains a number that is not finite"),
        ({"conf": {"k": "v" * 70000}}, "conf: is 70009 characters as JSON, more than the 65536 allowed"),
        ({"conf": {"k\x00": 1}}, "conf: contains a NUL character"),
        ({"items": [{"node_id": True}]}, "items[0].node_id: must be an integer, got the boolean True"),
        ({"items": [{"url": "u\x00"}]}, "items[0].url: contains a NUL character"),
        ({"items": [{}] * 2000}, "items: has 2000 entries, more than the 1024 allowed"),
        ({"items": "postgres://u@h:1"}, "items"),  # ansible-core's first error would not name the option
        # ansible-core's conversion takes these (Python's int()/float() do); as text only plain ASCII digits pass.
        ({"count": "3\n"}, "count: must be an integer written in ASCII digits without spaces, got '3\\n'"),
        ({"count": " 3"}, "count: must be an integer written in ASCII digits"),
        ({"count": "3_0"}, "count: must be an integer written in ASCII digits"),
        ({"count": "\u0663"}, "count: must be an integer written in ASCII digits"),
        ({"p": "80\n"}, "p: must be an integer written in ASCII digits"),
        ({"seconds": "1.5 "}, "seconds: must be a number written in ASCII digits"),
        ({"seconds": "\u0661"}, "seconds: must be a number written in ASCII digits"),
        # The same inside suboptions, named by their path.
        ({"items": [{"node_id": "4\n"}]}, "items[0].node_id: must be an integer written in ASCII digits"),
        ({"items": [{"node_id": 1}, {"node_id": "\u0664"}]}, "items[1].node_id: must be an integer written in ASCII"),
        ({"settings": {"wait": " 5"}}, "settings.wait: must be a number written in ASCII digits"),
        ({"settings": {"nested": {"n": "1_0"}}}, "settings.nested.n: must be an integer written in ASCII digits"),
    ],
)
def test_option_rules_fail_naming_the_option(capsys, args, message):
    result = run_neon_module(capsys, args)
    assert result["failed"]
    assert message in result["msg"]
    assert "syslog" not in result["msg"]


def test_env_timeout_is_bounded_too(capsys, monkeypatch):
    monkeypatch.setenv("NEONOPS_TIMEOUT", "nan")
    assert run_neon_module(capsys, {})["msg"] == "timeout: must be a finite number seconds, got nan"


@pytest.mark.parametrize("value", ["30\n", " 30", "3_0", "\u0663\u0660"])
def test_env_timeout_is_plain_ascii_digits_too(capsys, monkeypatch, value):
    monkeypatch.setenv("NEONOPS_TIMEOUT", value)
    result = run_neon_module(capsys, {})
    assert result["failed"]
    assert result["msg"].startswith("timeout (from NEONOPS_TIMEOUT): must be a number written in ASCII digits")


def test_an_env_timeout_in_ascii_digits_passes_and_the_option_wins_over_it(capsys, monkeypatch):
    monkeypatch.setenv("NEONOPS_TIMEOUT", "12.5")
    assert not run_neon_module(capsys, {}).get("failed")
    monkeypatch.setenv("NEONOPS_TIMEOUT", "30\n")
    assert not run_neon_module(capsys, {"timeout": 5}).get("failed")


def test_a_token_is_never_echoed_by_the_rules(capsys):
    result = run_neon_module(capsys, {"api_token": SECRET_TOKEN + "\x00"})
    assert result["msg"] == "api_token: contains a NUL character"
    assert SECRET_TOKEN not in json.dumps(result)


def test_valid_options_pass(capsys):
    args = {"count": 3, "seconds": 1.5, "name": "x", "conf": {"a": [1, "b"]}, "items": [{"node_id": 1, "url": "u"}]}
    result = run_neon_module(capsys, args)
    assert not result.get("failed"), result


@pytest.mark.parametrize(
    "args",
    [
        {"count": "3"},
        {"count": "+3"},
        {"seconds": "1.5"},
        {"seconds": "1e2"},
        {"p": "80"},
        {"items": [{"node_id": "4"}]},
        {"settings": {"wait": "2.5", "nested": {"n": "10"}}},
    ],
)
def test_numbers_as_plain_ascii_text_pass(capsys, args):
    result = run_neon_module(capsys, args)
    assert not result.get("failed"), result


def test_a_failure_after_an_accepted_mutation_is_a_change(capsys, fake_api):
    fake_api.add("PUT", "/v1/x", None)

    def mutate_then_fail(module):
        client = client_from_module(module)
        client.put("/v1/x", json={})
        module.fail_json(msg="then something failed")

    result = run_neon_module(capsys, {"api_url": fake_api.url}, mutate_then_fail)
    assert result["failed"] and result["changed"] is True
    assert (
        result["msg"]
        == f"then something failed (after the server accepted PUT {fake_api.url}/v1/x, so something changed)"
    )


def test_a_failure_without_a_mutation_is_not_a_change(capsys, fake_api):
    fake_api.add("GET", "/v1/x", {})

    def read_then_fail(module):
        client_from_module(module).get("/v1/x")
        module.fail_json(msg="failed")

    result = run_neon_module(capsys, {"api_url": fake_api.url}, read_then_fail)
    assert result["failed"] and not result.get("changed")


def test_missing_ca_path_fails_naming_it(capsys):
    result = run_neon_module(
        capsys, {"api_url": "https://ps:9898", "ca_path": "/nonexistent/ca.pem"}, client_from_module
    )
    assert result["msg"].startswith("ca_path: '/nonexistent/ca.pem' does not exist")


def test_fail_api_names_a_route_that_does_not_exist(capsys):
    exc = NeonAPIError("GET", "http://ps:9898/v1/x", 404, "page not found", {"msg": "page not found"})
    result = run_and_capture(capsys, {"api_url": "http://ps:9898"}, lambda m: fail_api(m, exc, "read x"))
    assert result["msg"].startswith("read x failed: the URL does not serve this API")


def test_neon_module_builds_on_the_ansible_module_class_of_the_moment(monkeypatch):
    """ansible-lint's args rule swaps basic.AnsibleModule for a class that stops after argument validation."""
    from ansible.module_utils import basic
    from ansible_collections.neonops.storage.plugins.modules import tenant_info

    class ValidationPassed(Exception):
        pass

    class StandIn(basic.AnsibleModule):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            raise ValidationPassed

    monkeypatch.setattr(basic, "AnsibleModule", StandIn)
    with patch_module_args({"api_url": "{{ url }}", "tenant_shard_id": "{{ tsid }}"}), pytest.raises(ValidationPassed):
        tenant_info.main()
