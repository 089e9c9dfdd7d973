"""The remote timeline client's per-timeline call counters, exposed on the pageserver's `GET /metrics`.

Upstream `pageserver/src/metrics.rs` registers `pageserver_remote_timeline_client_calls_started` and
`pageserver_remote_timeline_client_calls_finished` (an IntCounterPair) with the labels tenant_id, shard_id,
timeline_id, file_kind and op_kind: `started` counts calls that began, `finished` calls that ended, failed or not, so
`started - finished` is what is in flight (the test fixtures' `wait_for_upload_queue_empty` waits until they are
equal; the Python Prometheus parser reads them as `..._total`). The sim counts the calls it makes: layer and index
uploads (file_kind `layer` / `index`, op_kind `upload`), index downloads at attach and on-demand layer downloads
(op_kind `download`). Like upstream, which removes a timeline's label values when the timeline goes away, a tenant
shard's counters are dropped when it shuts down.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from neonsim.sharding import TenantShardId

CALLS_STARTED = "pageserver_remote_timeline_client_calls_started"
CALLS_FINISHED = "pageserver_remote_timeline_client_calls_finished"
LABELS = ("tenant_id", "shard_id", "timeline_id", "file_kind", "op_kind")

_Key = tuple[str, str, str, str, str]


class RemoteCallCounters:
    def __init__(self) -> None:
        self._pairs: dict[_Key, list[int]] = {}  # labels -> [started, finished]

    @contextlib.contextmanager
    def call(self, shard_id: TenantShardId, timeline_id: str, file_kind: str, op_kind: str) -> Iterator[None]:
        """Count one call around its body: started on entry, finished on exit however it exits."""
        key = (shard_id.tenant_id, shard_id.shard_index, timeline_id, file_kind, op_kind)
        pair = self._pairs.setdefault(key, [0, 0])
        pair[0] += 1
        try:
            yield
        finally:
            if self._pairs.get(key) is pair:  # not dropped (and recreated) while the call ran
                pair[1] += 1

    def forget(self, shard_id: TenantShardId, timeline_id: str | None = None) -> None:
        """Drop the counters of a tenant shard (or of one of its timelines)."""
        for key in [k for k in self._pairs if k[:2] == (shard_id.tenant_id, shard_id.shard_index)]:
            if timeline_id is None or key[2] == timeline_id:
                del self._pairs[key]

    def exposition(self) -> list[str]:
        """Prometheus text format lines (HELP and TYPE, then one sample per label set)."""
        lines = []
        for index, (name, help_text) in enumerate(
            ((CALLS_STARTED, "Number of started calls to remote timeline client."),
             (CALLS_FINISHED, "Number of finished calls to remote timeline client."))
        ):  # fmt: skip
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
            for key, pair in sorted(self._pairs.items()):
                labels = ",".join(f'{label}="{value}"' for label, value in zip(LABELS, key, strict=True))
                lines.append(f"{name}{{{labels}}} {pair[index]}")
        return lines
