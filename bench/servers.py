"""The two classifier processes the classifier and end-to-end benchmarks drive.

``omp_threads`` (optional) sets FAISS's OpenMP threads; unset, FAISS uses one per core as the
service does.

``mqtt``: facewire's real classifier (Matcher + Classifier + ClassifierService on a manual-ack
MqttConnection, wired as ``classifier-service run`` wires them) over a synthetic gallery read from
an ``.npy`` file of L2-normalised vectors, a labels file (one name per line) and optionally a
serialised FAISS index (HNSW, IVF) to search instead of the flat one.

``http``: the seed's way: a ThreadingHTTPServer that takes one JSON embedding per POST and
searches the flat index per request.

    python -m bench.servers mqtt|http '{"npy": ..., "labels": ..., ...}'

Both print ``ready <port>`` on stdout once they serve.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from classifier_service.core import Classifier
from classifier_service.matcher import Matcher
from classifier_service.service import ClassifierService
from facewire.config import ClassifierSettings, MqttSettings
from facewire.models.registry import embedder_spec
from facewire.mqtt import MqttConnection
from facewire.topics import Topics

MODEL = "sface-2021dec"


def load_matcher(args: dict[str, Any]) -> Matcher:
    """The gallery's Matcher (flat), searching a loaded HNSW/IVF index instead when one is given."""
    if args.get("omp_threads"):
        faiss.omp_set_num_threads(args["omp_threads"])
    vectors = np.load(args["npy"], mmap_mode="r")
    labels = Path(args["labels"]).read_text().split("\n")[: len(vectors)]
    matcher = Matcher(np.ascontiguousarray(vectors, dtype=np.float32), labels, args.get("threshold", 0.45))
    if args.get("index"):
        index = faiss.read_index(args["index"])
        if hasattr(index, "hnsw"):
            index.hnsw.efSearch = args.get("ef_search", 64)
        elif hasattr(faiss.extract_index_ivf(index), "nprobe"):
            faiss.extract_index_ivf(index).nprobe = args.get("nprobe", 8)
        matcher.index = index
    return matcher


def serve_mqtt(args: dict[str, Any]) -> None:
    """Run the real classifier until stdin closes."""
    matcher = load_matcher(args)
    topics = Topics()
    classifier = Classifier(matcher, MODEL, f"synthetic-{len(matcher.labels)}", dim=embedder_spec(MODEL).dim)
    settings = ClassifierSettings(batch_max=args.get("batch_max", 64), instance=args["instance"])
    connection = MqttConnection(
        MqttSettings(url=args["url"]), f"classifier-{args['instance']}", manual_ack=True, receive_maximum=4096
    )
    service = ClassifierService(classifier, connection, topics, settings, args["instance"])
    connection.set_will(service.will())
    connection.connect()
    service.start()
    time.sleep(0.5)  # let the SUBACK land
    print("ready 0", flush=True)
    sys.stdin.read()
    service.stop()


def serve_http(args: dict[str, Any]) -> None:
    """The seed's classifier: one JSON embedding per POST, one search per request."""
    matcher = load_matcher(args)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            probe = np.asarray(json.loads(body)["embedding"], dtype=np.float32)[None, :]
            match = matcher.match(probe)[0]
            data = json.dumps({"name": match.name, "score": match.score}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"ready {server.server_address[1]}", flush=True)
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    {"mqtt": serve_mqtt, "http": serve_http}[sys.argv[1]](json.loads(sys.argv[2]))
