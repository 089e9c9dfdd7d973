"""Simulated pageserver: location_config slots, WAL ingest into layer files, S3 uploads with generations,
deletion-queue validation, compaction, GC, heatmaps and secondaries, and the sim page service. Upstream sources:
`pageserver/src/http/routes.rs` (API), `pageserver/src/tenant/remote_timeline_client.rs` (S3 layout),
`docs/rfcs/025-generation-numbers.md` (generations).

Modules, each importing only the ones after it: `http` (routes, page service), `node` (tenant slots and their
lifecycle: re-attach, location_config, delete, reset; utilization), `tenant`, `walreceiver`, `deletion`, `timeline`,
`secondary`, `services` (what they share: context, local disk, remote storage, tasks, counters), `metrics` (the
remote timeline client's call counters), `remote` (S3 layout, index_part), `layers`, `config`.
"""

from neonsim.pageserver.http import Pageserver, create_node

__all__ = ["Pageserver", "create_node"]
