"""The classifier's worker thread searches with the FAISS settings of the service (issue 21): the OpenMP
thread count set on the main thread (OpenMP keeps one per thread; a new thread would use every core) and
the BLAS path from 4 probes a batch; the service also runs the garbage collector less often. A real
mosquitto, a real FAISS index."""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterator

import faiss
import numpy as np
import pytest

from classifier_service.core import Classifier
from classifier_service.matcher import Matcher
from classifier_service.quality import Cohort
from classifier_service.service import BLAS_FROM, GC_THRESHOLDS, ClassifierService
from facewire.config import ClassifierSettings, MqttSettings
from facewire.mqtt import MqttConnection
from facewire.schema import FaceEmbedding, FaceResult
from facewire.topics import Topics
from facewire_console.broker import LocalBroker
from tests.test_schema import embedding, unit


@pytest.fixture
def one_thread() -> Iterator[None]:
    """FAISS on one OpenMP thread on this (main) thread, as ``classifier.faiss_threads: 1`` sets it; restored,
    with the garbage collector's thresholds."""
    threads, threshold = faiss.omp_get_max_threads(), faiss.cvar.distance_compute_blas_threshold
    collector = gc.get_threshold()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)
    faiss.cvar.distance_compute_blas_threshold = threshold
    gc.set_threshold(*collector)


def fresh_thread_count() -> int:
    """The OpenMP thread count a new thread starts with."""
    seen: list[int] = []
    thread = threading.Thread(target=lambda: seen.append(faiss.omp_get_max_threads()))
    thread.start()
    thread.join()
    return seen[0]


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: a new thread's default is one thread too")
@pytest.mark.usefixtures("one_thread")
def test_the_worker_searches_with_the_main_threads_openmp_count_and_blas_from_4_probes(
    broker: LocalBroker,
) -> None:
    assert fresh_thread_count() > 1, "without the service's care, a new thread would use every core"
    seen: list[tuple[int, int]] = []
    done = threading.Event()

    def observe(_pairs: list[tuple[FaceEmbedding, FaceResult]]) -> None:  # runs on the worker thread
        seen.append((faiss.omp_get_max_threads(), faiss.cvar.distance_compute_blas_threshold))
        done.set()

    vectors = np.stack([unit(seed=1), unit(seed=2), unit(seed=3)])
    matcher = Matcher(vectors, ["ada", "ada", "bob"], 0.5, cohort=Cohort())
    classifier = Classifier(matcher, "sface-2021dec", "v1", dim=128, observer=observe)
    connection = MqttConnection(MqttSettings(url=broker.url), "classifier-faiss", manual_ack=True)
    service = ClassifierService(classifier, connection, Topics(), ClassifierSettings(instance="faiss"), "faiss")
    service.start()
    connection.connect()
    node = MqttConnection(MqttSettings(url=broker.url), "cam-1")
    node.connect()
    try:
        assert node.publish(Topics().embeddings("cam-1"), embedding().to_msgpack()).wait_for_publish(10)
        assert done.wait(20), "the embedding was classified"
    finally:
        node.close()
        service.stop()
    assert seen[0] == (1, BLAS_FROM * 128)
    assert gc.get_threshold() == GC_THRESHOLDS != (700, 10, 10), "generation 0 collected less often than by default"
