"""Status messages: an edge node's heartbeat, a service instance's heartbeat, the nodes summary.

All three are retained JSON. A status without ``ts`` is a last will (the broker
publishes it when the client vanishes, so the sender could not stamp it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from facewire.errors import SchemaError
from facewire.schema import fields as read
from facewire.schema.fields import SCHEMA_VERSION

MAX_STATUS_BYTES = 64 * 1024
MAX_SUMMARY_BYTES = 1024 * 1024
MAX_NODES = 4096
MAX_DETAILS = 64
NODE_COUNTERS = (
    "frames",
    "faces",
    "embedded",
    "published",
    "unconfirmed",
    "spool_depth",
    "spool_dropped",
    "spool_refused",
    "spool_unheard",
)
STATES = ("online", "offline")
VIEW_STATES = ("online", "stale", "offline")

Detail = int | float | str | dict[str, int] | None


@dataclass(frozen=True)
class NodeStatus:
    """An edge node's retained status on ``<prefix>/nodes/<node>/status``: online with its counters, or offline."""

    node: str
    state: str
    ts: float | None = None
    reason: str = ""
    model: str = ""
    detector: str = ""
    provider: str = ""
    source: str = ""
    frames: int | None = None
    faces: int | None = None
    embedded: int | None = None
    published: int | None = None
    gated: dict[str, int] | None = None  # faces not embedded, per reason (edge_agent.quality.REASONS)
    fps: float | None = None
    faces_per_s: float | None = None
    unconfirmed: int | None = None
    spool_depth: int | None = None
    spool_dropped: int | None = None
    spool_refused: int | None = None
    spool_unheard: int | None = None  # publishes the broker took with no subscriber, kept and re-sent
    v: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        """Compact JSON without the fields that are not set."""
        return read.dump_json({k: v for k, v in asdict(self).items() if v is not None and v != ""})

    @classmethod
    def from_json(cls, payload: bytes) -> NodeStatus:
        """Decode and validate a node status; raise SchemaError with the reason otherwise."""
        data = read.json_object(payload, MAX_STATUS_BYTES)
        read.check_version(data)
        read.check_fields(data, NODE_STATUS_FIELDS)
        values: dict[str, Any] = {"node": read.node(data), "state": read.choice(data, "state", STATES)}
        for name in ("ts", "fps", "faces_per_s"):
            values[name] = read.optional_number(data, name)
        for name in ("reason", "model", "detector", "provider", "source"):
            values[name] = read.optional_text(data, name, 1024)
        for name in NODE_COUNTERS:
            values[name] = read.optional_integer(data, name)
        values["gated"] = read.count_map(data, "gated") if "gated" in data else None
        return cls(**values)


NODE_STATUS_FIELDS = frozenset(f.name for f in fields(NodeStatus))


@dataclass(frozen=True)
class ServiceStatus:
    """A service instance's retained status on ``<prefix>/services/<service>/<instance>/status``.

    ``details`` are the service's own numbers (results, queue depths per node,
    the gallery version...), flat beside the common fields on the wire: each a
    finite number, a short string, null, or a map of names to counts.
    """

    instance: str
    state: str
    ts: float | None = None
    details: dict[str, Detail] = field(default_factory=dict)
    v: int = SCHEMA_VERSION

    def number(self, key: str) -> float | None:
        """A numeric detail, or None when absent or not a number."""
        value = self.details.get(key)
        return float(value) if isinstance(value, (int, float)) else None

    def counts(self, key: str) -> dict[str, int]:
        """A map-of-counts detail (``queue``, ``deadletter_reasons``), empty when absent."""
        value = self.details.get(key)
        return dict(value) if isinstance(value, dict) else {}

    def to_json(self) -> bytes:
        body: dict[str, Any] = {"v": self.v, "instance": self.instance, "state": self.state}
        if self.ts is not None:
            body["ts"] = self.ts
        clash = body.keys() & self.details.keys()
        if clash:
            raise ValueError(f"status details may not be named {sorted(clash)}")
        return read.dump_json(body | self.details)

    @classmethod
    def from_json(cls, payload: bytes) -> ServiceStatus:
        """Decode and validate a service status; raise SchemaError with the reason otherwise."""
        data = read.json_object(payload, MAX_STATUS_BYTES)
        read.check_version(data)
        rest = {k: v for k, v in data.items() if k not in ("v", "instance", "state", "ts")}
        if len(rest) > MAX_DETAILS:
            raise SchemaError("out-of-range", f"more than {MAX_DETAILS} details")
        return cls(
            instance=read.text(data, "instance"),
            state=read.choice(data, "state", STATES),
            ts=read.optional_number(data, "ts"),
            details={str(key): _detail(rest, key) for key in rest},
        )


def _detail(data: dict[str, Any], key: str) -> Detail:
    value = data[key]
    if value is None:
        return None
    if isinstance(value, str):
        return read.optional_text(data, key, 1024)
    if isinstance(value, dict):
        return read.count_map(data, key)
    if isinstance(value, int) and not isinstance(value, bool):
        return read.integer(data, key, -read.INT64_MAX, read.INT64_MAX)
    return read.number(data, key)


@dataclass(frozen=True)
class NodeView:
    """One node as the nodes watcher judges it (online / stale / offline), as ``facewire nodes`` shows it."""

    node: str
    state: str
    last_seen: float
    age: float
    fps: float | None
    faces_per_s: float | None
    queue: int | None
    model: str
    reason: str

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeView:
        read.check_fields(data, NODE_VIEW_FIELDS)
        return cls(
            node=read.node(data),
            state=read.choice(data, "state", VIEW_STATES),
            last_seen=read.number(data, "last_seen"),
            age=read.number(data, "age"),
            fps=read.optional_number(data, "fps"),
            faces_per_s=read.optional_number(data, "faces_per_s"),
            queue=read.optional_integer(data, "queue"),
            model=read.optional_text(data, "model", 1024),
            reason=read.optional_text(data, "reason", 1024),
        )


NODE_VIEW_FIELDS = frozenset(f.name for f in fields(NodeView))


@dataclass(frozen=True)
class NodesSummary:
    """Retained on ``<prefix>/stats/nodes``: every node's judged state, from the nodes watcher."""

    ts: float
    nodes: tuple[NodeView, ...] = ()
    v: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return read.dump_json({"v": self.v, "ts": self.ts, "nodes": [asdict(view) for view in self.nodes]})

    @classmethod
    def from_json(cls, payload: bytes) -> NodesSummary:
        """Decode and validate a nodes summary; raise SchemaError with the reason otherwise."""
        data = read.json_object(payload, MAX_SUMMARY_BYTES)
        read.check_version(data)
        views = tuple(NodeView.from_dict(item) for item in read.object_list(data, "nodes", MAX_NODES))
        return cls(ts=read.number(data, "ts"), nodes=views)
