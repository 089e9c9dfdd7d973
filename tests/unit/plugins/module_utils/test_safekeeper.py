from __future__ import annotations

import pytest
from ansible_collections.neonops.storage.plugins.module_utils import _safekeeper
from ansible_collections.neonops.storage.plugins.module_utils._client import NeonAPIError, NeonClient
from ansible_collections.neonops.storage.plugins.module_utils._lsn import LSN_FIELDS
from ansible_collections.neonops.storage.tests.unit.conftest import TENANT_ID, TIMELINE_ID


@pytest.fixture
def client(fake_api):
    return NeonClient(fake_api.url, backoff_factor=0, retries=0)


def test_timeline_status_path(fake_api, client):
    fake_api.add("GET", f"/v1/tenant/{TENANT_ID}/timeline/{TIMELINE_ID}", {"commit_lsn": "0/10"})
    assert _safekeeper.timeline_status(client, TENANT_ID, TIMELINE_ID) == {"commit_lsn": "0/10"}


def test_timeline_status_404_raises(fake_api, client):
    fake_api.add("GET", f"/v1/tenant/{TENANT_ID}/timeline/{TIMELINE_ID}", {"msg": "NotFound: timeline"}, 404)
    with pytest.raises(NeonAPIError) as info:
        _safekeeper.timeline_status(client, TENANT_ID, TIMELINE_ID)
    assert info.value.status == 404


def test_status(fake_api, client):
    fake_api.add("GET", "/v1/status", {"id": 101})
    assert _safekeeper.status(client) == {"id": 101}


def test_every_timeline_status_lsn_field_is_known_to_the_lsn_helpers():
    assert set(_safekeeper.TIMELINE_STATUS_LSN_FIELDS) <= set(LSN_FIELDS)
