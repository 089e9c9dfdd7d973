"""Simulated pageserver: location_config slots, WAL ingest into layer files, S3 uploads with generations,
deletion-queue validation, compaction, GC, heatmaps and secondaries, and the sim page service. Upstream sources:
`pageserver/src/http/routes.rs` (API), `pageserver/src/tenant/remote_timeline_client.rs` (S3 layout),
`docs/rfcs/025-generation-numbers.md` (generations).

Modules: `node` (slots, re-attach, location_config, utilization), `http` (routes, page service), `tenant`,
`timeline`, `layers`, `remote` (S3 layout, index_part), `deletion`, `walreceiver`, `secondary`, `config`.
"""

from neonsim.pageserver.http import Pageserver, create_node

__all__ = ["Pageserver", "create_node"]
