from __future__ import annotations

import pytest
from ansible_collections.neonops.storage.plugins.module_utils._client import NeonAPIError, NeonClient
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


def test_tls_settings_are_on_the_session():
    assert NeonClient("https://h:1").session.verify is True
    assert NeonClient("https://h:1", ca_path="/etc/ca.pem").session.verify == "/etc/ca.pem"
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
