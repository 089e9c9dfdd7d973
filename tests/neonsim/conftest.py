"""Fixtures for simulator tests.

`neonsim_fleet` is a factory fixture:
`neonsim_fleet(topology_name_or_path="small", auth=None, tls=None, **overrides)` starts a fleet (`python -m neonsim up`
semantics: moto, the S3 fault proxy, every node, bootstrap, inventory.yml) in its own tmp dir and returns a
`neonsim.fleet.SimFleet`. Every fleet it started is torn down after the test, pass or fail (`down` stops exactly the
recorded process groups).

- `topology_name_or_path`: a bundled topology name (`default`, `small`, `storcon-only`), a YAML path, or a dict.
- `auth=True` turns on JWT auth (tokens in `fleet.tokens`, headers via `fleet.headers("storcon")`).
- `tls=True` serves every node's API over HTTPS: `fleet.url(name)` is https://, pass `verify=fleet.verify` (the CA,
  `fleet.ca_path`) to requests.
- `**overrides` replace top-level topology keys, e.g. `tenants=[...]`, `computes=[]`,
  `storage_controller={"name": "storcon", "heartbeat_interval_s": 1, "offline_after_s": 3}`.

SimFleet helpers: `dir`, `fleet` (fleet.json), `inventory_path`, `url(name)`, `pg_url(name)`, `storcon_url`,
`tls`, `ca_path`, `verify`, `headers(service)`, `request_log(name)`, `pids()`, `kill(name)`, `start(name)`,
`fault(name, **spec)`, `clear_fault(name)`, `status()`, `down()`.

`neonsim_fleet_module` is the same factory with module scope (one fleet per test file).

Other test trees can reuse it with `from tests.neonsim.conftest import neonsim_fleet  # noqa: F401`, or build
the same two-line fixture on `neonsim.fleet.start_fleet`. Tests are independent (own dir, own free ports) and
safe under pytest-xdist (`-n auto`).
"""

from __future__ import annotations

import os

import pytest

from neonsim import fleet as fleet_mod


def pytest_configure(config):
    config.addinivalue_line("markers", "neonsim: starts neonsim processes (safe to run in parallel with xdist)")


def _fleet_factory(tmp_path_factory):
    started: list[fleet_mod.SimFleet] = []

    def start(topology_name_or_path="small", auth=None, tls=None, **overrides) -> fleet_mod.SimFleet:
        directory = tmp_path_factory.mktemp("fleet")
        try:
            # owner_pid: a run killed before teardown (a CI timeout) still stops its fleet through the reaper.
            sim = fleet_mod.start_fleet(
                topology_name_or_path, directory, auth=auth, tls=tls, owner_pid=os.getpid(), **overrides
            )
        except BaseException:
            fleet_mod.down(directory)  # up cleans up after itself; this covers an interrupt mid-way
            raise
        started.append(sim)
        return sim

    yield start
    errors = []
    for sim in reversed(started):
        try:
            sim.down()
        except fleet_mod.FleetError as exc:
            errors.append(str(exc))
    assert not errors, f"fleet teardown left processes: {errors}"


@pytest.fixture
def neonsim_fleet(tmp_path_factory):
    yield from _fleet_factory(tmp_path_factory)


@pytest.fixture(scope="module")
def neonsim_fleet_module(tmp_path_factory):
    """Same factory, torn down after the module: share one fleet between a file's tests (xdist loadfile)."""
    yield from _fleet_factory(tmp_path_factory)
