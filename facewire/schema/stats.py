"""Threshold statistics, retained on ``<prefix>/stats/thresholds`` by the stats service."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from facewire.errors import SchemaError
from facewire.schema import fields as read
from facewire.schema.fields import SCHEMA_VERSION

MAX_REPORT_BYTES = 1024 * 1024
MAX_GRID = 10_000
MAX_BINS = 10_000


@dataclass(frozen=True)
class OperatingPoint:
    """A threshold with its measured FAR and FRR; ``method`` says how the threshold was found."""

    threshold: float
    far: float
    frr: float
    method: str = "empirical"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OperatingPoint:
        read.check_fields(data, {"threshold", "far", "frr", "method"})
        return cls(
            read.number(data, "threshold"),
            read.number(data, "far"),
            read.number(data, "frr"),
            read.text(data, "method", 32),
        )


@dataclass(frozen=True)
class GridPoint:
    """FAR, FRR and the share of live faces left unknown at one threshold (None: no scores to measure)."""

    threshold: float
    far: float | None
    frr: float | None
    unknown_share: float | None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GridPoint:
        read.check_fields(data, {"threshold", "far", "frr", "unknown_share"})
        return cls(
            read.number(data, "threshold"),
            read.optional_number(data, "far"),
            read.optional_number(data, "frr"),
            read.optional_number(data, "unknown_share"),
        )


@dataclass(frozen=True)
class Histograms:
    """Coarse score histograms (bins of ``width`` from ``start``) of genuine, impostor and live scores."""

    start: float
    width: float
    genuine: tuple[int, ...] = ()
    impostor: tuple[int, ...] = ()
    live: tuple[int, ...] = ()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Histograms:
        read.check_fields(data, {"start", "width", "genuine", "impostor", "live"})
        return cls(
            read.number(data, "start"),
            read.number(data, "width"),
            *(_counts(data, key) for key in ("genuine", "impostor", "live")),
        )


def _counts(data: dict[str, Any], key: str) -> tuple[int, ...]:
    raw = data.get(key)
    if not isinstance(raw, list) or len(raw) > MAX_BINS:
        raise SchemaError("wrong-type", f"{key} must be a list of at most {MAX_BINS} counts")
    return tuple(read.integer({key: value}, key) for value in raw)


@dataclass(frozen=True)
class ThresholdReport:
    """FAR / FRR over a threshold grid, the recommended and equal-error thresholds, and the histograms."""

    ts: float
    target_far: float
    gallery_version: str
    model: str
    counts: dict[str, int]
    recommended: OperatingPoint | None
    eer: OperatingPoint | None
    grid: tuple[GridPoint, ...]
    histogram: Histograms | None = None
    v: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return read.dump_json(asdict(self))

    @classmethod
    def from_json(cls, payload: bytes) -> ThresholdReport:
        """Decode and validate a report; raise SchemaError with the reason otherwise."""
        data = read.json_object(payload, MAX_REPORT_BYTES)
        read.check_version(data)
        read.check_fields(data, REPORT_FIELDS)
        recommended, eer = (
            None if data.get(key) is None else OperatingPoint.from_dict(read.child(data, key))
            for key in ("recommended", "eer")
        )
        histogram = data.get("histogram")
        return cls(
            ts=read.number(data, "ts"),
            target_far=read.number(data, "target_far"),
            gallery_version=read.optional_text(data, "gallery_version"),
            model=read.optional_text(data, "model"),
            counts=read.count_map(data, "counts"),
            grid=tuple(GridPoint.from_dict(item) for item in read.object_list(data, "grid", MAX_GRID)),
            histogram=None if histogram is None else Histograms.from_dict(read.child(data, "histogram")),
            recommended=recommended,
            eer=eer,
        )


REPORT_FIELDS = frozenset(ThresholdReport.__dataclass_fields__)
