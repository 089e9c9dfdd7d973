"""Servers that are not what they claim never crash a module or pass for success (issue 9).

- A server answering 200 with a body that is not the JSON the route returns (HTML, text, JSON of another
  type) makes every module fail with a clear message, never with a traceback.
- A server answering 404 for everything (a plain web server, another service, the router's own
  "page not found") is not taken for "the tenant/timeline/node does not exist": the modules that treat an
  upstream 404 as absence fail instead, and send nothing.
- A failure after the server accepted a mutating request reports changed=true.
"""

from __future__ import annotations

import pytest
from ansible_collections.neonops.storage.plugins.modules import (
    compute_pageserver,
    heatmap_upload,
    secondary_download,
    storcon_node,
    storcon_node_info,
    storcon_tenant_info,
    storcon_tenant_policy,
    tenant_config,
    tenant_generation,
    tenant_info,
    tenant_location,
    timeline,
    timeline_catchup,
)
from ansible_collections.neonops.storage.tests.unit.conftest import SECRET_TOKEN, TENANT_ID, TIMELINE_ID_2
from ansible_collections.neonops.storage.tests.unit.fake_api import CannedResponse
from ansible_collections.neonops.storage.tests.unit.lenient_fleet import lenient_fleet
from ansible_collections.neonops.storage.tests.unit.plugins.test_hostile_input import EACH_MODULE, base_args
from ansible_collections.neonops.storage.tests.unit.plugins.test_odd_servers_data import BODIES, NOT_FOUND_PAGES


def args(api, module, **extra):
    return base_args(api, module, retries=0, **extra)


@pytest.mark.parametrize("body", list(BODIES), ids=list(BODIES))
@EACH_MODULE
def test_a_body_that_is_not_the_routes_json_fails_clearly(fake_api, run_module, module, body):
    fake_api.fallback = lambda request: BODIES[body]
    run = run_module(module, args(fake_api, module))  # a traceback would escape run_module and fail the test
    assert run.failed, run.result
    assert "Traceback" not in run.raw
    assert "is this the right URL for the service?" in run["msg"], run["msg"]
    assert SECRET_TOKEN not in run.raw
    # Every request got a 2xx answer here, so a failure after a mutating one is a change.
    assert run.changed == bool(fake_api.mutating_requests), [(r.method, r.path) for r in fake_api.requests]


ABSENCE_READERS = [
    pytest.param(tenant_info, {}, id="tenant_info"),
    pytest.param(tenant_location, {"mode": "Detached", "generation": None}, id="tenant_location-Detached"),
    pytest.param(tenant_location, {}, id="tenant_location-attach"),
    pytest.param(tenant_config, {}, id="tenant_config"),
    pytest.param(timeline, {"state": "absent"}, id="timeline-absent"),
    pytest.param(timeline, {}, id="timeline-present"),
    pytest.param(heatmap_upload, {}, id="heatmap_upload"),
    pytest.param(secondary_download, {}, id="secondary_download"),
    pytest.param(timeline_catchup, {}, id="timeline_catchup"),
    pytest.param(tenant_generation, {}, id="tenant_generation"),
    pytest.param(storcon_node, {}, id="storcon_node"),  # an unknown node is registered: never on a wrong URL
    pytest.param(storcon_node_info, {}, id="storcon_node_info"),
    pytest.param(storcon_tenant_info, {}, id="storcon_tenant_info"),
    pytest.param(storcon_tenant_policy, {"missing_ok": True}, id="storcon_tenant_policy-missing_ok"),
]


@pytest.mark.parametrize("page", list(NOT_FOUND_PAGES), ids=list(NOT_FOUND_PAGES))
@pytest.mark.parametrize(("module", "extra"), ABSENCE_READERS)
def test_a_server_answering_404_everywhere_is_not_taken_for_absence(fake_api, run_module, module, extra, page):
    fake_api.fallback = lambda request: NOT_FOUND_PAGES[page]
    run = run_module(
        module, {key: value for key, value in args(fake_api, module, **extra).items() if value is not None}
    )
    assert run.failed, f"a wrong URL passed for success: {run.result}"
    assert "does not serve" in run["msg"], run["msg"]
    assert not run.changed
    if module is not heatmap_upload:  # its one request is the upload itself; every other module reads first
        assert fake_api.mutating_requests == [], [(r.method, r.path) for r in fake_api.mutating_requests]


def test_an_upstream_404_still_means_absent(fake_api, run_module):
    fake_api.add("GET", f"/v1/location_config/{TENANT_ID}", {"msg": "NotFound: Tenant shard not found"}, 404)
    run = run_module(tenant_info, args(fake_api, tenant_info))
    assert not run.failed and run["exists"] is False


def _garbage_after(path_suffix, method="GET"):
    """The lenient fleet, except that ``method`` on paths ending in ``path_suffix`` answers a non-JSON 200
    once a mutating request was accepted (or at once for a mutating ``method``)."""
    accepted = []

    def answer(request):
        if request.method == method and request.path.endswith(path_suffix) and (accepted or method != "GET"):
            return CannedResponse(200, text="<html>maintenance</html>")
        if request.mutating:
            accepted.append(request)
        return lenient_fleet(request)

    return answer


@pytest.mark.parametrize(
    ("module", "extra", "fleet", "accepted"),
    [
        # The PUT is accepted, then the tenant state read answers garbage while waiting for Active.
        (tenant_location, {}, _garbage_after(f"/v1/tenant/{TENANT_ID}"), "PUT"),
        # wait_timeout=0: the PUT is accepted, then activation times out at once.
        (tenant_location, {"wait_timeout": 0}, _garbage_after("/nothing"), "PUT"),
        # The create is accepted (201) with a body that is not a TimelineInfo.
        (timeline, {}, _garbage_after("/timeline", "POST"), "POST"),
        # /configure is accepted, then the status poll answers garbage.
        (compute_pageserver, {}, _garbage_after("/status"), "POST"),
        # The policy PUT is accepted with a body that is not JSON.
        (storcon_tenant_policy, {}, _garbage_after("/policy", "PUT"), "PUT"),
    ],
    ids=["tenant_location-wait", "tenant_location-timeout", "timeline-create", "compute_pageserver", "storcon_policy"],
)
def test_a_failure_after_an_accepted_change_reports_changed(fake_api, run_module, module, extra, fleet, accepted):
    fake_api.fallback = fleet
    if module is tenant_location and extra.get("wait_timeout") == 0:
        fake_api.add("GET", f"/v1/tenant/{TENANT_ID}", {"id": TENANT_ID, "state": {"slug": "Attaching"}})
    run = run_module(module, args(fake_api, module, **extra))
    assert run.failed, run.result
    assert run.changed, run.result
    assert f"after the server accepted {accepted} {fake_api.url}" in run["msg"], run["msg"]


def test_a_refused_change_is_not_a_change(fake_api, run_module):
    fake_api.fallback = lenient_fleet
    fake_api.add("POST", f"/v1/tenant/{TENANT_ID}/timeline", {"msg": "Conflict: exists with other ancestor"}, 409)
    fake_api.add("GET", f"/v1/tenant/{TENANT_ID}/timeline/{TIMELINE_ID_2}", {"msg": "NotFound: Timeline x"}, 404)
    run = run_module(timeline, args(fake_api, timeline))
    assert run.failed and not run.changed
