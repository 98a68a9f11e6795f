"""Pure cores of the result subscribers and their SQLite stores (no broker)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from alert_service.alerts import AlertEngine
from alert_service.nodes import NodeRegistry
from alert_service.rules import RuleBook, dense_span, parse_hours, within
from alert_service.sqlite_alerts import SqliteAlertStore
from alert_service.sqlite_log import SqliteResultLog
from alert_service.stats import ThresholdStats, confirmed_scores
from alert_service.store import LogQuery, LogRow, Sighting
from alert_service.thresholds import ScoreHistogram, leave_one_out, report
from alert_service.views_log import parse_when
from facewire.config import AccessRule, AlertSettings
from facewire.erasure import erasure_marker
from facewire.errors import ConfigError
from facewire.schema import FaceResult
from facewire.schema.stats import ThresholdReport
from facewire.schema.status import NodeStatus
from tests.alert_support import T0, face


def rows(*results: FaceResult) -> list[LogRow]:
    return [LogRow.from_result(r) for r in results]


def test_log_is_idempotent_on_node_and_seq(tmp_path: Path) -> None:
    log = SqliteResultLog(tmp_path / "log.sqlite")
    assert log.insert(rows(face("cam1", 1), face("cam1", 2), face("cam2", 1))) == 3
    assert log.insert(rows(face("cam1", 2), face("cam1", 3, "Tony_Blair", 0.7))) == 1
    assert log.count() == 4
    newest = list(log.query(LogQuery()))
    assert [(r.node, r.seq) for r in newest] == [("cam1", 3), ("cam1", 2), ("cam2", 1), ("cam1", 1)]
    assert newest[0] == LogRow.from_result(face("cam1", 3, "Tony_Blair", 0.7))


def test_log_filters_and_last_seen(tmp_path: Path) -> None:
    log = SqliteResultLog(tmp_path / "log.sqlite")
    log.insert(rows(*(face(f"cam{s % 2}", s, "Tony_Blair" if s % 3 == 0 else "unknown", 0.6) for s in range(30))))
    assert {r.name for r in log.query(LogQuery(person="Tony_Blair", limit=0))} == {"Tony_Blair"}
    assert len(list(log.query(LogQuery(person="Tony_Blair", limit=0)))) == 10
    assert all(r.node == "cam1" for r in log.query(LogQuery(node="cam1", limit=0)))
    ranged = list(log.query(LogQuery(since=T0 + 10, until=T0 + 20, limit=0)))
    assert sorted(r.seq for r in ranged) == list(range(10, 20))
    assert all(not r.known for r in log.query(LogQuery(unknown_only=True, limit=0)))
    assert len(list(log.query(LogQuery(limit=5)))) == 5
    last = log.last_seen("Tony_Blair")
    assert last is not None and (last.node, last.seq) == ("cam1", 27)
    assert log.last_seen("Nobody") is None


def test_retention_by_age_and_rows(tmp_path: Path) -> None:
    log = SqliteResultLog(tmp_path / "log.sqlite")
    log.insert(rows(*(face("cam1", s, ts=T0 + s * 3600.0) for s in range(100))))
    now = T0 + 99 * 3600.0
    assert log.enforce_retention(max_age_days=2.0, max_rows=0, now=now) == 100 - 49
    assert min(r.seq for r in log.query(LogQuery(limit=0))) == 51
    assert log.enforce_retention(max_age_days=0, max_rows=10, now=now) == 39
    assert sorted(r.seq for r in log.query(LogQuery(limit=0))) == list(range(90, 100))


def test_confirmations_are_read_incrementally_and_replaced(tmp_path: Path) -> None:
    log = SqliteResultLog(tmp_path / "log.sqlite")
    log.insert(rows(face("cam1", 1, "Tony_Blair", 0.5), face("cam1", 2)))
    log.confirm("cam1", 1, "Tony_Blair", T0)
    log.confirm("cam1", 2, None, T0)
    first = log.confirmations_after(0)
    assert [(c.seq, c.truth) for c in first] == [(1, "Tony_Blair"), (2, None)]
    log.confirm("cam1", 1, "Colin_Powell", T0)
    again = log.confirmations_after(first[-1].id)
    assert [(c.seq, c.truth) for c in again] == [(1, "Colin_Powell")]
    assert again[0].row is not None and again[0].row.score == pytest.approx(0.5)


def engine(tmp_path: Path, **overrides: object) -> AlertEngine:
    settings = AlertSettings(unknown_count=3, unknown_window=10.0, cooldown=60.0, **overrides)
    return AlertEngine(RuleBook(settings), SqliteAlertStore(tmp_path / "alerts.sqlite"))


def test_unknown_repeated_raises_one_alert_per_incident(tmp_path: Path) -> None:
    alerts = engine(tmp_path)
    raised = []
    # incident 1: unknowns at T0+0..6 (every 2 s); a known face in between raises nothing
    for seq in (0, 2, 4, 6):
        raised += alerts.process(face("cam1", seq), T0)
    raised += alerts.process(face("cam1", 5, "Tony_Blair", 0.8), T0)
    # redelivery of a message that raised the alert: nothing new
    raised += alerts.process(face("cam1", 4), T0)
    # two unknowns on another node are not enough
    raised += alerts.process(face("cam2", 3), T0) + alerts.process(face("cam2", 5), T0)
    # incident 2: after more than the cooldown of quiet
    for seq in (200, 201, 202):
        raised += alerts.process(face("cam1", seq), T0)
    assert [a.id for a in raised] == ["unknown:cam1:cam1:4", "unknown:cam1:cam1:202"]
    first = raised[0]
    assert first.node == "cam1" and first.rule == "unknown" and first.ts == T0
    assert [(e.seq, e.name) for e in first.evidence] == [(0, "unknown"), (2, "unknown"), (4, "unknown")]
    stored = alerts.store.alerts(10)
    assert {s.alert.id: s.count for s in stored} == {"unknown:cam1:cam1:4": 4, "unknown:cam1:cam1:202": 3}


def test_unknowns_out_of_order_still_alert_once(tmp_path: Path) -> None:
    alerts = engine(tmp_path)
    raised = [a for seq in (9, 1, 5, 7) for a in alerts.process(face("cam1", seq), T0)]
    assert len(raised) == 1 and [e.seq for e in raised[0].evidence] == [1, 5, 9]


def test_watchlist_and_access_rules(tmp_path: Path) -> None:
    access = [AccessRule(person="Tony_Blair", nodes=["lobby"]), AccessRule(person="*", hours="08:00-18:00")]
    alerts = engine(tmp_path, watchlist=["Colin_Powell"], access=access, timezone="UTC")
    noon = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc).timestamp()
    night = dt.datetime(2024, 5, 1, 23, 0, tzinfo=dt.timezone.utc).timestamp()
    assert alerts.process(face("lobby", 1, "Tony_Blair", 0.8, ts=night), noon) == []  # his rule: lobby, any time
    wrong_node = alerts.process(face("garage", 2, "Tony_Blair", 0.8, ts=noon), noon)
    assert [a.rule for a in wrong_node] == ["access"]
    assert alerts.process(face("garage", 3, "Serena_Williams", 0.8, ts=noon), noon) == []
    late = alerts.process(face("garage", 4, "Serena_Williams", 0.8, ts=night), noon)
    assert [a.rule for a in late] == ["access"] and "23:00" in late[0].message
    watched = alerts.process(face("lobby", 5, "Colin_Powell", 0.8, ts=noon), noon)
    assert [a.rule for a in watched] == ["watchlist"]
    assert alerts.process(face("garage", 6, "Colin_Powell", 0.8, ts=noon + 30), noon) == []  # same incident


def test_hours_wrap_midnight_and_bad_config_is_refused() -> None:
    night = parse_hours("22:00-06:00")
    assert within(night, dt.time(23, 30)) and within(night, dt.time(5, 59)) and not within(night, dt.time(12))
    with pytest.raises(ConfigError):
        parse_hours("8 to 6")
    with pytest.raises(ConfigError):
        RuleBook(AlertSettings(timezone="Mars/Olympus"))


def test_dense_span_needs_min_count_within_window() -> None:
    def seen(*times: float) -> list[Sighting]:
        return [Sighting("unknown", "cam", "cam", i, 0, "unknown", 0.2, t) for i, t in enumerate(times)]

    assert dense_span(seen(0, 20, 40), 3, 10) == []
    assert [s.ts for s in dense_span(seen(0, 20, 25, 29, 31), 3, 10)] == [20, 25, 29]


def test_leave_one_out_scores() -> None:
    vectors = np.array([[1, 0, 0], [0.8, 0.6, 0], [0, 1, 0], [0, 0.6, 0.8]], dtype=np.float32)
    genuine, impostor = leave_one_out(vectors, ["a", "a", "b", "b"], chunk=3)
    assert genuine == pytest.approx([0.8, 0.8, 0.6, 0.6])
    assert impostor == pytest.approx([0.0, 0.6, 0.6, 0.36])


def test_report_thresholds_on_separated_scores() -> None:
    rng = np.random.default_rng(7)
    genuine, impostor, live = ScoreHistogram(), ScoreHistogram(), ScoreHistogram()
    genuine.add(rng.normal(0.7, 0.08, 50_000))
    impostor.add(rng.normal(0.1, 0.1, 50_000))
    live.add(np.concatenate([np.full(30, 0.2), np.full(70, 0.8)]))
    stats = report(genuine, impostor, live, 1e-3, 0.01, ts=0.0, gallery_version="g", model="m", counts={})
    assert stats.recommended is not None and stats.eer is not None
    assert stats.recommended.method == "empirical" and 0.38 < stats.recommended.threshold < 0.44
    assert stats.recommended.far <= 1e-3
    assert 0.38 < stats.eer.threshold < 0.44 and stats.eer.far == pytest.approx(stats.eer.frr, abs=2e-3)
    at_half = next(p for p in stats.grid if p.threshold == 0.5)
    assert at_half.unknown_share == pytest.approx(0.3)
    assert ThresholdReport.from_json(stats.to_json()) == stats


def test_few_impostor_scores_use_a_fitted_tail() -> None:
    rng = np.random.default_rng(3)
    genuine, impostor = ScoreHistogram(), ScoreHistogram()
    genuine.add(rng.normal(0.7, 0.08, 500))
    impostor.add(rng.normal(0.1, 0.1, 500))
    stats = report(genuine, impostor, ScoreHistogram(), 1e-3, 0.01, ts=0.0, gallery_version="", model="", counts={})
    assert stats.recommended is not None and stats.recommended.method == "tail-fit"
    true_threshold = 0.1 + 0.1 * 3.09  # the 1e-3 upper quantile of N(0.1, 0.1)
    assert true_threshold - 0.02 < stats.recommended.threshold < true_threshold + 0.06


def test_stats_are_incremental_and_ignore_redelivery() -> None:
    stats = ThresholdStats(1e-3, 0.05)
    vectors = np.eye(4, dtype=np.float32)
    stats.set_gallery(vectors, ["a", "a", "b", "b"], "v1", "m")
    assert stats.report().counts["gallery_impostor"] == 4
    assert stats.add_live(face("cam1", 1)) and not stats.add_live(face("cam1", 1))
    assert stats.report().counts["live"] == 1 and not stats.dirty


def test_confirmed_scores() -> None:
    blair = LogRow.from_result(face("cam1", 1, "Tony_Blair", 0.6))
    assert confirmed_scores("Tony_Blair", blair) == ([0.6], [pytest.approx(0.5)])
    assert confirmed_scores(None, blair) == ([], [0.6])
    assert confirmed_scores("Colin_Powell", blair) == ([pytest.approx(0.5)], [0.6])


def test_node_states() -> None:
    registry = NodeRegistry(stale_after=30.0)
    registry.update("a", NodeStatus("a", "online", T0, fps=9.5, unconfirmed=2, model="m"), T0)
    registry.update("b", NodeStatus("b", "online", T0 - 100, spool_depth=7, unconfirmed=1), T0)
    registry.update("c", NodeStatus("c", "offline", reason="connection lost"), T0)
    registry.update("d", NodeStatus("d", "online", T0 + 3600), T0)  # clock far ahead: time of receipt counts
    views = {v.node: v for v in registry.views(T0 + 5)}
    assert {n: v.state for n, v in views.items()} == {"a": "online", "b": "stale", "c": "offline", "d": "online"}
    assert views["a"].fps == 9.5 and views["a"].queue == 2 and views["d"].last_seen == T0
    assert views["b"].queue == 7  # the edge spool depth, when the heartbeat has it


def test_parse_when() -> None:
    assert parse_when("15m", 1000.0) == 100.0
    assert parse_when("1700000000", 0) == 1_700_000_000.0
    assert parse_when("2024-05-01T08:00:00+00:00", 0) == dt.datetime(2024, 5, 1, 8, tzinfo=dt.timezone.utc).timestamp()
    with pytest.raises(ConfigError):
        parse_when("yesterday-ish", 0)


def test_forgotten_person_is_erased_from_log_and_alerts(tmp_path: Path) -> None:
    marker = erasure_marker("Colin_Powell")
    log = SqliteResultLog(tmp_path / "log.sqlite")
    log.insert(rows(face("cam1", 1, "Colin_Powell", 0.7), face("cam1", 2, "Tony_Blair", 0.6), face("cam1", 3)))
    log.confirm("cam1", 1, "Colin_Powell", T0)
    assert log.erase_person("Colin_Powell", marker) == 1
    assert log.erase_person("Colin_Powell", marker) == 0  # idempotent: one event arrives per classifier replica
    stored = {r.seq: r for r in log.query(LogQuery(limit=0))}
    assert stored[1].name == marker and log.last_seen("Colin_Powell") is None
    assert all("Colin_Powell" not in [c.name for c in r.candidates] for r in stored.values())
    assert stored[2].candidates[1].name == marker and stored[2].name == "Tony_Blair"
    assert log.confirmations_after(0)[0].truth == marker
    alerts = engine(tmp_path, watchlist=["Colin_Powell"])
    raised = alerts.process(face("cam2", 50, "Colin_Powell", 0.61), T0)
    assert [a.id for a in raised] == ["watchlist:Colin_Powell:cam2:50"]
    assert alerts.store.erase_person("Colin_Powell", marker) == 1
    (kept,) = alerts.store.alerts(10)
    assert kept.alert.id == f"watchlist:{marker}:cam2:50" and kept.alert.subject == marker
    assert "Colin_Powell" not in kept.alert.to_json().decode()
    assert alerts.store.sightings("watchlist", marker, 0, 2 * T0)[0].name == marker
