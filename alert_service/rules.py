"""Alert rules, pure: which rules a result touches, and whether a sighting opens, extends or ignores an incident.

Times are capture times (``FaceResult.ts``), so a replayed or redelivered
stream decides exactly as the live one did.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from alert_service.store import Incident, Sighting
from facewire.config import AccessRule, AlertSettings
from facewire.errors import ConfigError
from facewire.schema import Alert, Evidence, FaceResult

UNKNOWN_RULE = "unknown"
WATCHLIST_RULE = "watchlist"
ACCESS_RULE = "access"
MAX_EVIDENCE = 20


@dataclass(frozen=True)
class Trigger:
    """A rule that a result concerns: ``min_count`` sightings of ``subject`` within ``window`` seconds alert."""

    rule: str
    subject: str
    min_count: int
    window: float
    detail: str

    def sighting(self, result: FaceResult) -> Sighting:
        return Sighting(
            self.rule, self.subject, result.node, result.seq, result.track, result.name, result.score, result.ts
        )


@dataclass(frozen=True)
class Decision:
    """What one sighting does: open a new incident (``alert``), extend ``extend_key``, or nothing."""

    alert: Alert | None = None
    extend_key: str | None = None


def parse_hours(text: str) -> tuple[dt.time, dt.time] | None:
    """``"08:00-18:00"`` -> (08:00, 18:00); ``""`` -> None (any time). The span may wrap midnight."""
    if not text.strip():
        return None
    try:
        start, end = (dt.time.fromisoformat(part.strip()) for part in text.split("-"))
    except ValueError as exc:
        raise ConfigError(f"access hours must look like 08:00-18:00, got {text!r}") from exc
    return start, end


def within(hours: tuple[dt.time, dt.time] | None, moment: dt.time) -> bool:
    if hours is None:
        return True
    start, end = hours
    return start <= moment < end if start <= end else moment >= start or moment < end


class RuleBook:
    """The configured rules, validated once."""

    def __init__(self, settings: AlertSettings) -> None:
        self.settings = settings
        try:
            self.zone = ZoneInfo(settings.timezone) if settings.timezone else None
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"unknown time zone {settings.timezone!r}") from exc
        self.watchlist = set(settings.watchlist)
        self.access = [(rule, parse_hours(rule.hours)) for rule in settings.access]

    def triggers(self, result: FaceResult) -> list[Trigger]:
        """Every rule ``result`` concerns."""
        found: list[Trigger] = []
        conf = self.settings
        if not result.known:
            if conf.unknown_count > 0:
                detail = f"unknown face {conf.unknown_count}x within {conf.unknown_window:g}s on {result.node}"
                found.append(Trigger(UNKNOWN_RULE, result.node, conf.unknown_count, conf.unknown_window, detail))
            return found
        if result.name in self.watchlist:
            found.append(Trigger(WATCHLIST_RULE, result.name, 1, 0.0, f"watch-listed {result.name} on {result.node}"))
        refusal = self.access_refusal(result)
        if refusal:
            found.append(Trigger(ACCESS_RULE, result.name, 1, 0.0, refusal))
        return found

    def access_refusal(self, result: FaceResult) -> str | None:
        """Why ``result``'s person may not be where and when it was seen, or None when allowed / unruled."""
        own = [(rule, hours) for rule, hours in self.access if rule.person == result.name]
        applicable = own or [(rule, hours) for rule, hours in self.access if rule.person == "*"]
        if not applicable:
            return None
        moment = dt.datetime.fromtimestamp(result.ts, tz=self.zone).time()
        if any(_allows(rule, hours, result.node, moment) for rule, hours in applicable):
            return None
        return f"{result.name} seen on {result.node} at {moment.strftime('%H:%M')}, outside allowed nodes/hours"


def _allows(rule: AccessRule, hours: tuple[dt.time, dt.time] | None, node: str, moment: dt.time) -> bool:
    return (not rule.nodes or node in rule.nodes) and within(hours, moment)


def decide(
    trigger: Trigger,
    result: FaceResult,
    window: list[Sighting],
    latest: Incident | None,
    cooldown: float,
    now: float,
) -> Decision:
    """Open, extend or ignore: one alert per incident, an incident lasting while sightings come within ``cooldown``."""
    if latest is not None and latest.first_ts - cooldown <= result.ts <= latest.last_ts + cooldown:
        return Decision(extend_key=latest.key)
    span = dense_span(window, trigger.min_count, trigger.window)
    if not span:
        return Decision()
    evidence = tuple(Evidence(s.node, s.seq, s.track, s.name, s.score, s.ts) for s in span[:MAX_EVIDENCE])
    first = span[0].ts
    alert = Alert(
        id=f"{trigger.rule}:{trigger.subject}:{result.node}:{result.seq}",
        rule=trigger.rule,
        node=result.node,
        subject=trigger.subject,
        message=trigger.detail,
        ts=first,
        raised_at=now,
        evidence=evidence,
    )
    return Decision(alert=alert)


def dense_span(sightings: list[Sighting], min_count: int, window: float) -> list[Sighting]:
    """The first run of at least ``min_count`` sightings (sorted by time) within ``window`` seconds, or []."""
    ordered = sorted(sightings, key=lambda s: (s.ts, s.node, s.seq))
    for start in range(len(ordered) - min_count + 1):
        end = start + min_count - 1
        if ordered[end].ts - ordered[start].ts <= window:
            while end + 1 < len(ordered) and ordered[end + 1].ts - ordered[start].ts <= window:
                end += 1
            return ordered[start : end + 1]
    return []
