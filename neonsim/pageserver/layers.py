"""Layer files: upstream naming, the on-disk JSON-lines format, and key reconstruction over a layer stack.

A delta layer holds the WAL records whose end_lsn lies in (lsn_start, lsn_end]; an image layer holds every
key's newest value as of its LSN (records with end_lsn <= lsn). Local files are
`<layer_name>-v1-<gen:08x>`; remote objects are `<layer_name>-<gen:08x>` (upstream
`pageserver/src/tenant/remote_timeline_client.rs`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from neonsim._durable import write_durably
from neonsim.lsn import lsn_hex16

KEY_MIN = "0" * 36
KEY_MAX = "F" * 36
# Compaction output (L1) covers a key partition in upstream; the sim's single partition ends one key short of
# the maximum so that L0 and L1 deltas stay distinguishable by name alone after a reload from index_part.
KEY_L1_END = "F" * 35 + "E"


def delta_layer_name(lsn_start: int, lsn_end: int, level1: bool = False) -> str:
    end = KEY_L1_END if level1 else KEY_MAX
    return f"{KEY_MIN}-{end}__{lsn_hex16(lsn_start)}-{lsn_hex16(lsn_end)}"


def image_layer_name(lsn: int) -> str:
    return f"{KEY_MIN}-{KEY_MAX}__{lsn_hex16(lsn)}"


def parse_layer_name(name: str) -> tuple[str, int, int]:
    """(kind, lsn_start, lsn_end) from a layer name; for images lsn_start == lsn_end == the image LSN."""
    _keys, sep, lsns = name.partition("__")
    if not sep:
        raise ValueError(f"not a layer name: {name}")
    if "-" in lsns:
        start, end = lsns.split("-", 1)
        return "delta", int(start, 16), int(end, 16)
    lsn = int(lsns, 16)
    return "image", lsn, lsn


def local_file_name(name: str, generation: int) -> str:
    return f"{name}-v1-{generation:08x}"


def parse_local_file_name(file_name: str) -> tuple[str, int] | None:
    name, sep, gen = file_name.rpartition("-v1-")
    if not sep or len(gen) != 8:
        return None
    try:
        return name, int(gen, 16)
    except ValueError:
        return None


@dataclass
class LayerDesc:
    """One layer in a timeline's layer map (from the local flush/compaction or from a remote index)."""

    name: str
    generation: int
    shard: str | None  # ShardIndex "NNCC"; None for unsharded
    file_size: int
    kind: str = ""
    lsn_start: int = 0
    lsn_end: int = 0
    resident: bool = False
    uploaded: bool = False
    level0: bool = True  # derived from the name: an L0 delta straight from a flush
    access_time: float = 0.0  # seconds since the epoch of the last read (0: never)
    residence_time: float = 0.0  # seconds since the epoch when it last became resident locally (0: never here)
    synthetic: bool = False  # sim-only: declared metadata without content (no S3 object)

    def __post_init__(self):
        self.kind, self.lsn_start, self.lsn_end = parse_layer_name(self.name)
        self.level0 = self.kind == "delta" and not self.name.startswith(f"{KEY_MIN}-{KEY_L1_END}__")

    @property
    def upper(self) -> int:
        return self.lsn_end

    def metadata(self) -> dict:
        meta: dict[str, int | str] = {"file_size": self.file_size, "generation": self.generation}
        if self.shard and self.shard != "0000":
            meta["shard"] = self.shard
        return meta


@dataclass
class LayerContent:
    """Parsed layer: key -> list of (end_lsn, value, lsn) ascending by end_lsn."""

    kind: str
    by_key: dict[str, list[tuple[int, str | None, int]]] = field(default_factory=dict)

    def newest_at(self, key: str, lsn: int) -> tuple[bool, str | None, int]:
        """(found, value, record_lsn) for the newest entry of key visible at lsn."""
        entries = self.by_key.get(key)
        if not entries:
            return False, None, 0
        for end_lsn, value, rec_lsn in reversed(entries):
            if end_lsn <= lsn:
                return True, value, rec_lsn
        return False, None, 0


def write_layer_file(path: Path, kind: str, records: list[dict]) -> int:
    """Write header + records as JSON lines, durably (a crash never leaves half a layer); returns the file size."""
    return write_durably(path, serialize_layer(kind, records))


def serialize_layer(kind: str, records: list[dict]) -> bytes:
    lines = [json.dumps({"kind": kind})] + [json.dumps(r, separators=(",", ":")) for r in records]
    return ("\n".join(lines) + "\n").encode()


def parse_layer_bytes(data: bytes) -> LayerContent:
    from neonsim.lsn import parse_lsn

    lines = data.decode().splitlines()
    header = json.loads(lines[0]) if lines else {"kind": "delta"}
    content = LayerContent(kind=header.get("kind", "delta"))
    for line in lines[1:]:
        if not line:
            continue
        rec = json.loads(line)
        end_lsn = parse_lsn(rec["end_lsn"])
        content.by_key.setdefault(rec["key"], []).append((end_lsn, rec.get("value"), parse_lsn(rec["lsn"])))
    for entries in content.by_key.values():
        entries.sort(key=lambda e: e[0])
    return content
