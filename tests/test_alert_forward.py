"""`alert-service run forward`: results POSTed to an HTTP endpoint that goes down and comes back, nothing lost.

A real mosquitto, a real forwarder process and a real HTTP server on loopback.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from alert_service.forward_queue import ForwardQueue
from facewire.erasure import erasure_marker
from facewire.schema import FaceResult
from facewire_console.broker import LocalBroker
from harness.processes import start_module
from tests.alert_support import face, log_tail, publish_all, results_payloads, wait_for_online, wait_until


class Endpoint:
    """A real HTTP server collecting POSTed results; ``refuse_seq`` answers 400 for that seq, for good."""

    def __init__(self, port: int, refuse_seq: int = -1) -> None:
        self.port = port
        self.refuse_seq = refuse_seq
        self.received: list[tuple[str, dict[str, object]]] = []
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> Endpoint:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if body["seq"] == endpoint.refuse_seq:
                    self.send_response(400)
                    self.end_headers()
                    self.wfile.write(b"bad result")
                    return
                endpoint.received.append((self.headers["Idempotency-Key"], body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/facewire"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_forwarder(broker: LocalBroker, url: str, work: Path, *extra: str) -> subprocess.Popen[bytes]:
    args = ["run", "forward", "--broker", broker.url, "--url", url, "--instance", "fwd", *extra]
    env = {"FACEWIRE_FORWARD__QUEUE": str(work / "forward.sqlite"), "FACEWIRE_FORWARD__BACKOFF_MAX": "1"}
    process = start_module("alert_service", args, env, work / "forward.log")
    wait_for_online(broker.url, "forward", "fwd")
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    assert process.wait(20) == 0


def test_results_survive_an_endpoint_outage_and_a_forwarder_restart(broker: LocalBroker, tmp_path: Path) -> None:
    endpoint = Endpoint(free_port()).start()
    forwarder = start_forwarder(broker, endpoint.url, tmp_path)
    results = [face(f"cam{seq % 2}", seq, "Tony_Blair" if seq % 3 else "unknown", 0.6) for seq in range(1, 61)]
    try:
        publish_all(broker.url, results_payloads(results[:10]))
        assert wait_until(lambda: len(endpoint.received) >= 10, 20), log_tail(tmp_path / "forward.log")
        endpoint.stop()  # the endpoint goes down ...
        publish_all(broker.url, results_payloads(results[10:40]))
        queue = ForwardQueue(tmp_path / "forward.sqlite")
        assert wait_until(lambda: queue.depth == 30, 20), f"pending {queue.depth}"  # acked to the broker, kept here
        stop(forwarder)  # ... and the forwarder restarts meanwhile, with results in its outbox
        publish_all(broker.url, results_payloads(results[40:] + results[:5]))  # and a redelivery of five
        forwarder = start_forwarder(broker, endpoint.url, tmp_path)
        endpoint.start()  # the endpoint comes back on the same address
        assert wait_until(lambda: len(endpoint.received) >= 60, 40), log_tail(tmp_path / "forward.log")
        assert wait_until(lambda: queue.depth == 0, 10)
    finally:
        stop(forwarder)
        endpoint.stop()
    keys = [key for key, _body in endpoint.received]
    assert sorted(keys) == sorted(f"{r.node}:{r.seq}" for r in results)  # every result once: none lost, none twice
    assert [body["seq"] for _key, body in endpoint.received][:10] == list(range(1, 11))  # in order
    assert FaceResult.from_json(json.dumps(endpoint.received[0][1]).encode()) == FaceResult.from_json(
        results[0].to_json()
    )


def test_a_filter_forwards_only_unknown_faces_and_a_refusal_is_kept_aside(broker: LocalBroker, tmp_path: Path) -> None:
    endpoint = Endpoint(free_port(), refuse_seq=3).start()
    forwarder = start_forwarder(broker, endpoint.url, tmp_path, "--only", "unknown")
    results = [face("door", seq, "unknown" if seq % 2 else "Colin_Powell", 0.3) for seq in range(1, 21)]
    try:
        publish_all(broker.url, results_payloads(results))
        assert wait_until(lambda: len(endpoint.received) >= 9, 20), log_tail(tmp_path / "forward.log")
    finally:
        stop(forwarder)
        endpoint.stop()
    forwarded = sorted(int(body["seq"]) for _key, body in endpoint.received)  # type: ignore[call-overload]
    assert forwarded == [seq for seq in range(1, 21) if seq % 2 and seq != 3]
    queue = ForwardQueue(tmp_path / "forward.sqlite")
    assert (queue.depth, queue.rejected) == (0, 1)


def test_forgetting_a_person_scrubs_results_still_waiting(tmp_path: Path) -> None:
    queue = ForwardQueue(tmp_path / "forward.sqlite")
    queue.put([face("door", 1, "Tony_Blair", 0.7), face("door", 2, "unknown", 0.2)])
    marker = erasure_marker("Tony_Blair")
    assert queue.erase("Tony_Blair", marker) == 2  # the name, and a candidate of the unknown face
    bodies = [pending.body for pending in queue.oldest(10)]
    assert all(b"Tony_Blair" not in body for body in bodies) and marker.encode() in bodies[0]


def test_the_outbox_keeps_the_newest_classification_handled_across_restarts(tmp_path: Path) -> None:
    """What a restarted forwarder asks a replay from: only ever later, also for batches it forwarded nothing of."""
    queue = ForwardQueue(tmp_path / "forward.sqlite")
    assert queue.handled_until() is None
    assert queue.put([face("door", 1), face("door", 2)], handled_until=1000.0) == 2
    assert queue.put([face("door", 2)], handled_until=900.0) == 0  # a redelivery from an older batch
    assert queue.put([], handled_until=1100.0) == 0  # a batch the filter wanted nothing of
    queue.close()
    reopened = ForwardQueue(tmp_path / "forward.sqlite")
    assert reopened.handled_until() == 1100.0 and reopened.depth == 2
    reopened.close()
