"""``facewire web`` in a real headless chromium against a real broker, classifier and alert-service (issue 12).

The browser is Debian's chromium driven by Playwright (never a downloaded
browser); the tests skip with a message where it is absent.
"""

from __future__ import annotations

import http.client
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from alert_service.sqlite_alerts import SqliteAlertStore
from alert_service.sqlite_log import SqliteResultLog
from alert_service.store import LogRow
from facewire.faces import FaceAnalyzer
from facewire.models.registry import default_threshold
from facewire.schema import FaceResult
from facewire.schema.status import NodeStatus
from facewire_console.broker import LocalBroker
from harness.probes import probe
from harness.processes import SAMPLE, Collector, RunningClassifier, run_module, start_module
from tests.alert_support import face, publish_all, wait_until
from tests.gallery_support import largest_embedding, make_gallery, photos
from tests.web_support import RunningWeb, browser, console_errors, log_in, screenshot

KNOWN = SAMPLE / "lfw" / "known"


def raw_get(port: int, path: str) -> int:
    """Status of a GET with ``path`` sent exactly as given (no client-side normalisation of ``..``)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


def fill_log(database: Path, count: int) -> list[FaceResult]:
    """``count`` recorded results on node cam-a, one a second, as the recorder stores them."""
    results = [
        face("cam-a", seq, "Colin_Powell" if seq % 2 else "unknown", 0.6 if seq % 2 else 0.2) for seq in range(count)
    ]
    log = SqliteResultLog(database)
    try:
        assert log.insert([LogRow.from_result(r) for r in results]) == count
    finally:
        log.close()
    return results


@pytest.mark.slow
def test_login_csrf_rate_limit_paths_and_log_paging(broker: LocalBroker, tmp_path: Path) -> None:
    results = fill_log(tmp_path / "results.sqlite", 120)
    env = {
        "FACEWIRE_MQTT__URL": broker.url,
        "FACEWIRE_WEB__LOGIN_ATTEMPTS": "3",
        "FACEWIRE_RECORDER__DATABASE": str(tmp_path / "results.sqlite"),
    }
    web = RunningWeb(tmp_path, env).start()
    try:
        with browser(tmp_path) as context:
            page = context.new_page()
            # unauthenticated: pages send the browser to the login page, everything else is refused
            page.goto(web.url + "/library")
            assert page.url.startswith(web.url + "/login")
            screenshot(page, tmp_path, "login")
            for path in ("/", "/events", "/log", "/log.csv", "/alerts", "/library", "/unknowns", "/photos/a/b.jpg"):
                answer = context.request.get(web.url + path, headers={"Accept": "*/*"})
                assert answer.status == 401, (path, answer.status)
            for path in ("/alerts/ack", "/library/enroll", "/library/forget", "/log/verdict", "/logout"):
                assert context.request.post(web.url + path, form={"id": "x"}).status == 401, path
            # the session cookie is HttpOnly, SameSite=Strict and Secure
            log_in(page, web.url)
            page.wait_for_selector("#connection.online")
            (cookie,) = [c for c in context.cookies() if c["name"] == "facewire_session"]
            assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
            # logged in, a form post without (or with a wrong) CSRF token is refused
            answer = context.request.post(web.url + "/alerts/ack", form={"id": "x", "back": "/"})
            assert answer.status == 403 and "CSRF" in answer.text()
            answer = context.request.post(web.url + "/alerts/ack", form={"id": "x", "csrf": "forged"})
            assert answer.status == 403
            answer = context.request.post(
                web.url + "/library/enroll",
                multipart={"person": "Eve", "photos": {"name": "a.jpg", "mimeType": "image/jpeg", "buffer": b"x"}},
            )
            assert answer.status == 403
            # nothing is served outside its folder
            assert raw_get(web.port, "/static/../../auth.py") == 404
            assert raw_get(web.port, "/static/%2e%2e/%2e%2e/auth.py") == 404
            assert raw_get(web.port, "/static/app.js") == 200
            for path in ("/photos/..%2F..%2Fweb-users.json/x.jpg", "/photos/Tony_Blair/..%2F..%2Fweb-secret"):
                assert context.request.get(web.url + path).status == 404, path
            # the log: 50 rows a page, newest first, time range, CSV of everything that matches
            page.goto(web.url + "/log?node=cam-a")
            seqs = [int(x) for x in page.locator("#log tbody td:nth-child(4)").all_inner_texts()]
            assert seqs == list(range(119, 69, -1))
            page.click("#older")
            page.click("#older")
            assert page.locator("#log tbody tr").count() == 20 and page.locator("#older").count() == 0
            since, until = results[10].ts, results[20].ts  # [since, until)
            page.goto(web.url + f"/log?person=Colin_Powell&since={since}&until={until}")
            seqs = [int(x) for x in page.locator("#log tbody td:nth-child(4)").all_inner_texts()]
            assert seqs == [19, 17, 15, 13, 11]
            page.goto(web.url + "/log?since=yesterday-ish")
            assert "cannot read time" in page.inner_text("#error")
            csv_lines = context.request.get(web.url + "/log.csv?node=cam-a&unknown=1").text().splitlines()
            assert len(csv_lines) == 61 and all(",unknown," in line for line in csv_lines[1:])
            page.click("header .logout button")
            page.wait_for_url(web.url + "/login")
            assert context.request.get(web.url + "/log", headers={"Accept": "*/*"}).status == 401
            # the fourth wrong password within the window is refused without being checked
            fresh = context.new_page()
            for attempt in range(4):
                fresh.goto(web.url + "/login")
                fresh.fill("input[name=username]", "alice")
                fresh.fill("input[name=password]", f"wrong-{attempt}")
                fresh.click("button[type=submit]")
                fresh.wait_for_selector("#error")
            assert "too many failed logins" in fresh.inner_text("#error")
            log_in(fresh, web.url)
            assert "too many failed logins" in fresh.inner_text("#error")  # even the right password waits
    finally:
        assert web.stop() == 0, web.log.read_text()


def publish_probe(url: str, vector: np.ndarray, seq: int) -> None:
    """Replay one face, as an edge would publish it, on node cam-web."""
    embedding = probe(vector, "cam-web", seq)
    publish_all(url, [(f"facewire/embeddings/{embedding.node}", embedding.to_msgpack())])


def wait_for_row(page: object, seq: int) -> dict[str, str]:
    """The live table's row of result ``seq`` once the page has received it (pushed, the page never reloads)."""
    row = page.wait_for_selector(f"#results tbody tr[data-seq='{seq}']")  # type: ignore[attr-defined]
    return {"name": row.get_attribute("data-name"), "class": row.get_attribute("class")}


def reloaded_text(page: Any, selector: str) -> str:
    page.reload()
    return str(page.inner_text(selector))


@pytest.mark.slow
def test_live_log_enrol_forget_and_alert_in_a_browser(
    broker: LocalBroker, tmp_path: Path, analyzer: FaceAnalyzer
) -> None:
    blair = photos(KNOWN / "Tony_Blair")
    vector = largest_embedding(analyzer, blair[0])  # the face the camera sees; the others are uploaded
    people = ("Colin_Powell", "Serena_Williams", "Gloria_Macapagal_Arroyo")
    gallery = make_gallery(tmp_path / "gallery", {person: photos(KNOWN / person) for person in people})
    database = tmp_path / "results.sqlite"
    env = {
        "FACEWIRE_MQTT__URL": broker.url,
        "FACEWIRE_CLASSIFIER__GALLERY": str(gallery),
        "FACEWIRE_RECORDER__DATABASE": str(database),
        "FACEWIRE_ALERTS__DATABASE": str(database),
        "FACEWIRE_ALERTS__UNKNOWN_COUNT": "3",
        "FACEWIRE_ALERTS__UNKNOWN_WINDOW": "600",
        "FACEWIRE_STATS__PUBLISH_INTERVAL": "1",
        "FACEWIRE_WEB__MAX_PHOTO_BYTES": "200000",
    }
    classifier = RunningClassifier(broker.url, gallery, tmp_path, instance="c1", env=env).start()
    recorder = start_module("alert_service", ["run", "all"], env, tmp_path / "alert-service.log")
    web = RunningWeb(tmp_path, env).start()
    try:
        with browser(tmp_path) as context:
            page = context.new_page()
            errors = console_errors(page)
            log_in(page, web.url)
            page.wait_for_selector("#connection.online")
            # 1. the node announces itself (retained status) and a replayed face appears live, red: nobody
            # enrolled looks like it
            status = NodeStatus("cam-web", "online", time.time(), fps=7.5, faces_per_s=2.0).to_json()
            publish_all(broker.url, [("facewire/nodes/cam-web/status", status)], retain=True)
            page.wait_for_selector("#nodes tr.state-online >> text=cam-web")
            publish_probe(broker.url, vector, 1)
            assert wait_for_row(page, 1) == {"name": "unknown", "class": "red"}
            # 2. enrol by upload: a text file and an oversized image are refused with a message, photos enrolled
            page.goto(web.url + "/library")
            noise = np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)
            big = tmp_path / "big.png"
            assert cv2.imwrite(str(big), noise) and big.stat().st_size > 200_000
            notes = tmp_path / "notes.jpg"
            notes.write_text("not a photo at all\n")
            page.fill("#enroll input[name=person]", "Tony_Blair")
            page.set_input_files("#enroll input[type=file]", [str(notes), str(big), *map(str, blair[1:])])
            page.click("#enroll button[type=submit]")
            outcomes = page.inner_text("#outcomes", timeout=120_000)
            assert "rejected: notes.jpg: not a readable image" in outcomes and "BytesIO" not in outcomes
            assert "rejected: big.png: larger than the limit of 200000 bytes" in outcomes
            enrolled = outcomes.count("\tenrolled")
            assert enrolled >= 3, outcomes
            assert page.locator("tr[data-person='Tony_Blair'] img.thumb").count() == enrolled
            screenshot(page, tmp_path, "library")
            # 3. the next result of the same face names them, live
            page.goto(web.url + "/")
            page.wait_for_selector("#connection.online")
            publish_probe(broker.url, vector, 2)
            row = wait_for_row(page, 2)
            assert row["name"] == "Tony_Blair" and row["class"] in ("green", "yellow")
            page.fill("#filter-person", "Tony_Blair")  # the person filter hides the other rows
            assert page.locator("#results tbody tr:visible").all_inner_texts() == [
                page.inner_text("#results tbody tr[data-seq='2']")
            ]
            page.fill("#filter-person", "")
            assert page.locator("#results tbody tr:visible").count() == 2
            # 4. the detection log has both, searchable by node, exportable as CSV
            page.goto(web.url + "/log?node=cam-web")
            assert wait_until(lambda: reloaded_text(page, "#log").count("cam-web") == 2, 20)
            assert "Tony_Blair" in page.inner_text("#log") and "unknown" in page.inner_text("#log")
            screenshot(page, tmp_path, "log")
            csv_text = context.request.get(web.url + "/log.csv?node=cam-web").text()
            assert csv_text.splitlines()[0].startswith("node,seq,") and len(csv_text.splitlines()) == 3
            # 5. forget them (the typed name confirms) and the same face is unknown again
            page.goto(web.url + "/library")
            page.fill("tr[data-person='Tony_Blair'] input[name=confirm]", "Tony_Blair")
            page.click("tr[data-person='Tony_Blair'] button.danger")
            assert "forgot Tony_Blair" in page.inner_text("#notice", timeout=60_000)
            assert page.locator("tr[data-person='Tony_Blair']").count() == 0
            assert not (tmp_path / "web-data" / "photos" / "Tony_Blair").exists()
            page.goto(web.url + "/")
            page.wait_for_selector("#connection.online")
            publish_probe(broker.url, vector, 3)
            assert wait_for_row(page, 3) == {"name": "unknown", "class": "red"}
            # 6. a third unknown face on the node raises an alert, pushed to the page; acknowledge it there
            stranger = largest_embedding(analyzer, photos(SAMPLE / "lfw" / "unknown" / "Paul_Tracy")[0])
            publish_probe(broker.url, stranger, 4)
            alert = page.wait_for_selector("#alerts li", timeout=30_000)
            alert_id = alert.get_attribute("data-id")
            screenshot(page, tmp_path, "live")
            alert.query_selector("button").click()
            page.wait_for_selector("#connection.online")
            assert page.locator(f"#alerts li[data-id='{alert_id}']").count() == 0
            store = SqliteAlertStore(database)
            try:
                (acked,) = [a for a in store.alerts(10) if a.alert.id == alert_id]
            finally:
                store.close()
            assert acked.acked_by == "web:alice"
            page.goto(web.url + "/alerts?all=1")
            assert "web:alice" in page.inner_text(f"#alert-table tr[data-id='{alert_id}']")
            # 7. the stranger is an unknown visitor: name the cluster, and the next sighting is named
            page.goto(web.url + "/unknowns")
            publish_probe(broker.url, stranger, 5)  # seen twice: a cluster of 2 (Tony_Blair's seq 3 is another)
            assert wait_until(lambda: "cam-web ×2" in reloaded_text(page, "#clusters"), 20)
            cluster = page.locator("#clusters tbody tr").filter(has_text="cam-web ×2")
            assert cluster.count() == 1, page.inner_text("#clusters")
            screenshot(page, tmp_path, "unknowns")
            cluster.locator("input[name=person]").fill("Paul_Tracy")
            cluster.locator("button").click()
            page.wait_for_url(web.url + "/library")
            assert page.locator("tr[data-person='Paul_Tracy']").count() == 1
            page.goto(web.url + "/")
            page.wait_for_selector("#connection.online")
            publish_probe(broker.url, stranger, 6)
            assert wait_for_row(page, 6)["name"] == "Paul_Tracy"
            # 8. mark that result as another person from the log (relabel): the operator's verdict is recorded
            page.goto(web.url + "/log?node=cam-web&person=Paul_Tracy")
            assert wait_until(lambda: "Paul_Tracy" in reloaded_text(page, "#log tbody"), 20)
            verdict = page.locator("#log tbody tr").filter(has_text="Paul_Tracy").first
            verdict.locator("input[name=person]").fill("Paul_Tracy_Jr")
            verdict.locator("button[value=relabel]").click()
            assert "relabel cam-web/6" in page.inner_text("#message", timeout=60_000)
            # 9. the threshold statistics as charts, the threshold in use marked
            page.goto(web.url + "/thresholds")
            genuine = "Chart.getChart('distributions').data.datasets[0].data.some((share) => share > 0)"
            assert wait_until(lambda: page.reload() is not None and page.evaluate(genuine), 30)
            assert page.inner_text("#current") == str(default_threshold("sface-2021dec"))  # unset in the config
            bar = page.evaluate("Chart.getChart('rates').data.datasets[2]")
            assert bar["type"] == "bar" and bar["data"][48] == 1 and bar["data"].count(None) == len(bar["data"]) - 1
            screenshot(page, tmp_path, "thresholds")
            assert errors == []
            # 10. stopping the server with a live page open ends its event stream at once
            page.goto(web.url + "/")
            page.wait_for_selector("#connection.online")
            started = time.monotonic()
            assert web.stop() == 0 and time.monotonic() - started < 3
            assert "Traceback" not in web.log.read_text()
    finally:
        assert web.stop() == 0, web.log.read_text()
        recorder.terminate()
        recorder.wait(30)
        classifier.stop()


def run_edge(env: dict[str, str], node: str, folder: Path, thumbnails: bool) -> None:
    extra = {"FACEWIRE_EDGE__UNKNOWN_THUMBNAILS": "true"} if thumbnails else {}
    edge = run_module("edge_agent", ["run", "--node-id", node, "--source", str(folder), "--once"], {**env, **extra})
    assert edge.returncode == 0, edge.stderr[-2000:]


@pytest.mark.slow
def test_unknown_face_thumbnails_are_opt_in_and_shown_with_their_cluster(broker: LocalBroker, tmp_path: Path) -> None:
    gallery = make_gallery(tmp_path / "gallery", {"Colin_Powell": photos(KNOWN / "Colin_Powell")})
    strangers = sorted((SAMPLE / "lfw" / "unknown").glob("*/*.jpg"))
    first, second = (tmp_path / "first", tmp_path / "second")
    make_gallery(first, {"": strangers[:3]}), make_gallery(second, {"": strangers[3:]})
    env = {"FACEWIRE_MQTT__URL": broker.url, "FACEWIRE_EDGE__STATE_DIR": str(tmp_path / "edge-state")}
    classifier = RunningClassifier(broker.url, gallery, tmp_path, instance="c1", env=env).start()
    web = RunningWeb(tmp_path, env).start()
    collector = Collector(broker.url, ["facewire/results/+", "facewire/thumbnails/+"]).start()
    try:
        # off by default: results come back, no picture leaves the edge
        run_edge(env, "cam-off", first, thumbnails=False)
        assert wait_until(lambda: len(collector.matching(lambda t: t.endswith("/cam-off"))) >= 3, 30)
        time.sleep(1.0)
        assert collector.matching(lambda t: "/thumbnails/" in t) == []
        # opted in: a thumbnail of a few KB per unknown track, kept by the dashboard and shown with its cluster
        run_edge(env, "cam-on", second, thumbnails=True)
        sent = collector.wait_for(lambda t: t == "facewire/thumbnails/cam-on", 1, 30)
        assert sent and all(len(payload) < 8 * 1024 for _topic, payload in sent)
        with browser(tmp_path) as context:
            page = context.new_page()
            log_in(page, web.url)
            page.goto(web.url + "/unknowns")
            assert wait_until(lambda: reloaded_text(page, "#clusters").count("cam-on") >= 1, 20)
            picture = page.locator("#clusters img.thumb").first
            picture.wait_for()
            assert picture.evaluate("(img) => img.complete && img.naturalWidth") == 64
            assert len(list((tmp_path / "web-data" / "unknown" / "cam-on").glob("*.jpg"))) == len(sent)
            screenshot(page, tmp_path, "unknowns-thumbnails")
            row = page.locator("#clusters tbody tr").filter(has=page.locator("img.thumb")).first
            row.locator("input[name=person]").fill("Someone_Named")
            row.locator("button").click()
            page.wait_for_url(web.url + "/library")
            assert len(list((tmp_path / "web-data" / "unknown" / "cam-on").glob("*.jpg"))) == len(sent) - 1
    finally:
        collector.stop()
        assert web.stop() == 0, web.log.read_text()
        classifier.stop()
