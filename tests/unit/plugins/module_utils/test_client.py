from __future__ import annotations

import pytest
from ansible_collections.neonops.storage.plugins.module_utils._client import (
    NeonAPIError,
    NeonClient,
    UnexpectedResponse,
)
from ansible_collections.neonops.storage.tests.unit.conftest import SECRET_TOKEN


def make_client(fake_api, **kw):
    kw.setdefault("backoff_factor", 0)
    return NeonClient(fake_api.url, **kw)


def test_get_returns_parsed_json_and_sends_bearer_token(fake_api):
    fake_api.add("GET", "/v1/status", {"id": 7})
    response = make_client(fake_api, token=SECRET_TOKEN).get("/v1/status")
    assert response.status == 200
    assert response.data == {"id": 7}
    assert fake_api.requests[0].headers["Authorization"] == f"Bearer {SECRET_TOKEN}"


def test_no_authorization_header_without_token(fake_api):
    fake_api.add("GET", "/v1/status", {"id": 7})
    make_client(fake_api).get("/v1/status")
    assert "Authorization" not in fake_api.requests[0].headers


def test_json_null_and_empty_body_are_none(fake_api):
    fake_api.add("PUT", "/v1/tenant/config", None)
    fake_api.add("POST", "/v1/x", text="")
    client = make_client(fake_api)
    assert client.put("/v1/tenant/config", json={"tenant_id": "a"}).data is None
    assert client.post("/v1/x").data is None
    assert fake_api.requests[0].body == {"tenant_id": "a"}
    assert fake_api.requests[1].raw_body == ""


def test_query_params_booleans_are_lowercase(fake_api):
    fake_api.add("PUT", "/v1/tenant/t/location_config", {"shards": []})
    make_client(fake_api).put(
        "/v1/tenant/t/location_config", params={"lazy": True, "flush_ms": 500, "x": None}, json={}
    )
    assert fake_api.requests[0].query == {"lazy": "true", "flush_ms": "500"}


def test_error_carries_method_url_status_and_server_msg(fake_api):
    fake_api.add("PUT", "/v1/tenant/t/location_config", {"msg": "Generation must be set when attaching"}, 400)
    client = make_client(fake_api, token=SECRET_TOKEN)
    with pytest.raises(NeonAPIError) as info:
        client.put("/v1/tenant/t/location_config", json={"mode": "AttachedSingle"})
    error = info.value
    assert (error.method, error.status, error.message) == ("PUT", 400, "Generation must be set when attaching")
    assert error.url == f"{fake_api.url}/v1/tenant/t/location_config"
    assert str(error) == (
        f"PUT {fake_api.url}/v1/tenant/t/location_config: HTTP 400: Generation must be set when attaching"
    )
    assert SECRET_TOKEN not in str(error)
    assert len(fake_api.requests) == 1  # 400 is not retried


def test_compute_ctl_error_key(fake_api):
    fake_api.add("POST", "/configure", {"error": "invalid spec"}, 400)
    with pytest.raises(NeonAPIError) as info:
        make_client(fake_api, error_key="error").post("/configure", json={})
    assert info.value.message == "invalid spec"


def test_non_json_error_body_is_text(fake_api):
    fake_api.add("GET", "/v1/status", status=500, text="internal boom")
    with pytest.raises(NeonAPIError) as info:
        make_client(fake_api, retries=0).get("/v1/status")
    assert info.value.message == "internal boom"
    assert info.value.body == "internal boom"


def test_expected_statuses(fake_api):
    fake_api.add("POST", "/v1/tenant/t/secondary/download", {"layers_total": 3}, 202)
    response = make_client(fake_api).post("/v1/tenant/t/secondary/download", expected=(200, 202))
    assert response.status == 202


@pytest.mark.parametrize("method", ["GET", "PUT"])
@pytest.mark.parametrize("status", [408, 429, 502, 503, 504])
def test_idempotent_methods_retry_transient_statuses_with_a_warning_each(fake_api, method, status):
    fake_api.add(method, "/v1/thing", {"msg": "Tenant not yet active"}, status)
    fake_api.add(method, "/v1/thing", {"msg": "still"}, status)
    fake_api.add(method, "/v1/thing", {"ok": True})
    warnings = []
    client = make_client(fake_api, token=SECRET_TOKEN, warn=warnings.append)
    kwargs = {"json": {}} if method == "PUT" else {}
    response = client.request(method, "/v1/thing", **kwargs)
    assert response.data == {"ok": True}
    assert len(fake_api.requests) == 3
    assert len(warnings) == 2
    assert f"HTTP {status}" in warnings[0] and "retry 1 of 3" in warnings[0]
    assert all(SECRET_TOKEN not in w for w in warnings)


def test_retries_exhausted_raise_last_status_and_message(fake_api):
    fake_api.add("GET", "/v1/thing", {"msg": "Tenant not yet active"}, 503)
    warnings = []
    with pytest.raises(NeonAPIError) as info:
        make_client(fake_api, retries=2, warn=warnings.append).get("/v1/thing")
    assert info.value.status == 503
    assert info.value.message == "Tenant not yet active"
    assert len(fake_api.requests) == 3
    assert len(warnings) == 2


@pytest.mark.parametrize("method", ["POST", "PATCH", "DELETE"])
def test_non_idempotent_methods_are_never_retried(fake_api, method):
    fake_api.add(method, "/v1/thing", {"msg": "busy"}, 503)
    warnings = []
    with pytest.raises(NeonAPIError) as info:
        make_client(fake_api, warn=warnings.append).request(method, "/v1/thing")
    assert info.value.status == 503
    assert len(fake_api.requests) == 1
    assert warnings == []


def test_get_retries_a_dropped_connection(fake_api):
    fake_api.add("GET", "/v1/status", drop=True)
    fake_api.add("GET", "/v1/status", {"id": 1})
    warnings = []
    assert make_client(fake_api, warn=warnings.append).get("/v1/status").data == {"id": 1}
    assert len(fake_api.requests) == 2
    assert len(warnings) == 1


def test_post_is_not_retried_after_a_dropped_connection(fake_api):
    fake_api.add("POST", "/v1/tenant/t/heatmap_upload", drop=True)
    fake_api.add("POST", "/v1/tenant/t/heatmap_upload", None)
    with pytest.raises(NeonAPIError) as info:
        make_client(fake_api).post("/v1/tenant/t/heatmap_upload")
    assert info.value.status is None
    assert len(fake_api.requests) == 1


def test_connection_refused_is_a_transport_error(fake_api):
    url = fake_api.url
    fake_api.close()
    client = NeonClient(url, token=SECRET_TOKEN, retries=1, backoff_factor=0)
    with pytest.raises(NeonAPIError) as info:
        client.get("/v1/status")
    assert info.value.status is None
    assert info.value.url == f"{url}/v1/status"
    assert SECRET_TOKEN not in str(info.value)


def test_server_message_echoing_the_token_is_redacted(fake_api):
    fake_api.add("GET", "/v1/status", {"msg": f"bad token {SECRET_TOKEN}"}, 403)
    with pytest.raises(NeonAPIError) as info:
        make_client(fake_api, token=SECRET_TOKEN).get("/v1/status")
    assert SECRET_TOKEN not in str(info.value)


@pytest.mark.parametrize(
    "url", ["", "ftp://h:1", "h:9898", "http://", "http://h:notaport", "http://h:1/?a=1", None, 42]
)
def test_bad_base_url_is_rejected_before_any_request(url):
    with pytest.raises(ValueError, match="invalid API URL"):
        NeonClient(url)


def test_tls_settings_are_on_the_session(tmp_path):
    ca_path = tmp_path / "ca.pem"
    ca_path.write_text("")
    assert NeonClient("https://h:1").session.verify is True
    assert NeonClient("https://h:1", ca_path=str(ca_path)).session.verify == str(ca_path)
    assert NeonClient("https://h:1", validate_certs=False, ca_path="/etc/ca.pem").session.verify is False


def test_validate_certs_false_wins_over_requests_ca_bundle_env(monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/ca.pem")
    client = NeonClient("https://127.0.0.1:1", validate_certs=False, retries=0)
    sent = {}

    def fake_send(request, **kwargs):
        sent.update(kwargs)
        raise RuntimeError("stop")

    monkeypatch.setattr(client.session, "send", fake_send)
    with pytest.raises(RuntimeError):
        client.get("/v1/status")
    assert sent["verify"] is False


def test_base_url_trailing_slash(fake_api):
    fake_api.add("GET", "/v1/status", {"id": 1})
    NeonClient(fake_api.url + "/").get("v1/status")
    assert fake_api.requests[0].path == "/v1/status"


# ---- issue 9: hostile settings and servers that are not what they claim ---------------------------------------


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://" + "a" * 64 + ".example:9898", "1 to 63 characters"),  # was an unhandled LocationParseError
        ("http://" + ("a" * 60 + ".") * 5 + "example", "longer than 253"),
        ("http://h:9898\n", "whitespace or control"),
        ("http://h :9898", "whitespace or control"),
        ("http://h\u200b:9898", "whitespace or control"),
        ("http://\u043f\u0441.example", "ASCII"),
        ("http://h:0", "bad port"),
        ("http://h:", "bad port"),
        ("http://h/?", "query or fragment"),
        ("http://[::g]:1", "IPv6"),
        ("http://a..b:1", "1 to 63 characters"),
        ("http://" + "a" * 3000, "longer than 2048"),
    ],
)
def test_hostile_base_urls_are_refused_with_the_reason(url, problem):
    with pytest.raises(ValueError, match="invalid API URL") as info:
        NeonClient(url)
    assert problem in str(info.value)
    assert len(str(info.value)) < 400


@pytest.mark.parametrize("url", ["http://admin:s3cr3t@h:9898", "https://tok3n@h", "http://u:p%40ss@h:1/x"])
def test_user_information_is_refused_and_never_shown(url):
    with pytest.raises(ValueError, match="user information") as info:
        NeonClient(url)
    assert "s3cr3t" not in str(info.value) and "tok3n" not in str(info.value) and "p%40ss" not in str(info.value)
    assert "********@" in str(info.value)


@pytest.mark.parametrize("url", ["http://ps-1.internal:9898", "https://10.0.0.1", "http://[::1]:9898/", "http://h_1:1"])
def test_ordinary_base_urls_pass(url):
    assert NeonClient(url).base_url == url.rstrip("/")


def test_a_missing_ca_path_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"^ca_path: '/nonexistent/ca.pem' does not exist"):
        NeonClient("https://h:1", ca_path="/nonexistent/ca.pem")
    NeonClient("https://h:1", validate_certs=False, ca_path="/nonexistent/ca.pem")  # not used, not checked


@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), 1e10, 0, -1, True, "5"])
def test_timeout_must_be_finite_and_bounded(timeout):
    with pytest.raises(ValueError, match="^timeout: "):
        NeonClient("http://h:1", timeout=timeout)


@pytest.mark.parametrize("retries", [-1, 1 << 100, True, 1.5])
def test_retries_are_bounded(retries):
    with pytest.raises(ValueError, match="^retries: "):
        NeonClient("http://h:1", retries=retries)


@pytest.mark.parametrize(
    ("body", "returns", "problem"),
    [
        ({"text": "<html>hi</html>"}, None, "the response is not JSON: '<html>hi</html>'"),
        ({"text": "x" * 100_000}, None, "(100000 characters)"),
        ({"body": [1]}, dict, "expected a JSON object in the response, got a JSON array: [1]"),
        ({"body": None}, list, "expected a JSON array in the response, got null or no body"),
        ({"body": "ok"}, (dict, type(None)), "expected a JSON object or null or no body"),
    ],
)
def test_a_body_that_is_not_the_routes_json_is_an_error(fake_api, body, returns, problem):
    fake_api.add("GET", "/v1/status", **body)
    with pytest.raises(UnexpectedResponse) as info:
        make_client(fake_api).get("/v1/status", returns=returns)
    assert info.value.status == 200 and problem in info.value.message
    assert "is this the right URL for the service?" in info.value.message
    assert len(info.value.message) < 400


def test_a_check_function_can_refuse_a_body(fake_api):
    fake_api.add("GET", "/v1/status", {"id": "seven"})
    client = make_client(fake_api)
    with pytest.raises(UnexpectedResponse, match="id: not a number"):
        client.get("/v1/status", returns=dict, check=lambda data: "id: not a number")


@pytest.mark.parametrize(
    ("status", "body", "not_found"),
    [
        (404, {"msg": f"NotFound: tenant {'a' * 32}"}, True),
        (404, {"msg": "NotFound: Tenant shard not found"}, True),
        (404, {"msg": "NotFound: Timeline a/b was not found"}, True),
        (404, {"msg": "NotFound: Node 7 not registered"}, True),
        (404, {"msg": "Shard x not found"}, True),
        (404, {"msg": "page not found"}, False),  # the router: no such route
        (404, {"detail": "Not Found"}, False),  # some other JSON API
        (404, {"msg": "Not Found"}, False),
        (404, {"msg": "tenant"}, True),
        (404, "<html>404 Not Found: tenant</html>", False),  # an HTML page, even one naming a tenant
        (404, None, False),
        (409, {"msg": "Conflict: tenant busy"}, False),
    ],
)
def test_upstream_not_found_is_told_from_an_unknown_route(status, body, not_found):
    message = body.get("msg", "") if isinstance(body, dict) else str(body)
    exc = NeonAPIError("GET", "http://h/x", status, message, body)
    assert exc.not_found is not_found
    assert exc.unknown_route is (status == 404 and not not_found)


def test_accepted_mutations_are_recorded(fake_api):
    fake_api.add("PUT", "/v1/a", None)
    fake_api.add("POST", "/v1/b", {"msg": "Conflict"}, 409)
    fake_api.add("POST", "/debug/v1/inspect", {"attachment": None})
    fake_api.add("GET", "/v1/c", {})
    client = make_client(fake_api, retries=0)
    client.put("/v1/a", json={})
    with pytest.raises(NeonAPIError):
        client.post("/v1/b")
    client.post("/debug/v1/inspect", json={}, mutating=False)
    client.get("/v1/c")
    assert client.mutations == [f"PUT {fake_api.url}/v1/a"]


def test_non_finite_numbers_are_never_sent(fake_api):
    with pytest.raises(ValueError):
        make_client(fake_api).put("/v1/tenant/config", json={"checkpoint_distance": float("nan")})
    assert fake_api.requests == []


def test_a_huge_server_message_is_cut(fake_api):
    fake_api.add("GET", "/v1/status", {"msg": "m" * 1_000_000}, 400)
    with pytest.raises(NeonAPIError) as info:
        make_client(fake_api).get("/v1/status")
    assert len(info.value.message) < 1100 and "(1000000 characters)" in info.value.message
