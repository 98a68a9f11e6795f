"""The actor of a gallery command is the broker account its topic names (issue 18.6), on a real secured stack.

A classifier replica runs with its own account over TLS against the shipped
secure config and ACL; the operator's client writes a false actor into the
payload, and the classifier account tries an op only an operator may send.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from classifier_service.gallery.client import GalleryClient
from facewire.topics import Topics
from harness.processes import Collector, RunningClassifier
from tests.broker_support import RoleClient, start_secure_broker
from tests.gallery_support import KNOWN, make_gallery, photos

T = Topics()


def test_the_audit_names_the_account_and_a_replica_account_cannot_forget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secure = start_secure_broker(tmp_path, ["admin", "classifier"])
    people = {name: photos(KNOWN / name)[:2] for name in ("Colin_Powell", "Tony_Blair")}
    gallery = make_gallery(tmp_path / "gallery", people)
    own, admin = secure.settings("classifier"), secure.settings("admin")
    monkeypatch.setenv("FACEWIRE_MQTT__USERNAME", "classifier")
    monkeypatch.setenv("FACEWIRE_MQTT__PASSWORD_FILE", str(own.password_file))
    tls = ["--broker", own.url, "--tls-ca", str(own.tls_ca), "--tls-cert", str(own.tls_cert)]
    tls += ["--tls-key", str(own.tls_key)]
    watch = Collector(admin.url, [T.deadletter("classifier")], admin).start()
    classifier = RunningClassifier(own.url, gallery, tmp_path, instance="auth", extra=tls, watch=admin).start()
    replica = RoleClient(own, "classifier-forger")
    try:
        with GalleryClient(admin, actor="mallory") as client:
            forgotten = client.request({"op": "forget", "person": "Tony_Blair", "actor": "mallory"})[0]
            forged = {"op": "forget", "id": "f1", "person": "Colin_Powell", "actor": "admin"}
            assert replica.publish(T.gallery_cmd("classifier"), json.dumps(forged).encode()) < 0x80
            letters = watch.wait_for(lambda t: True, 1, timeout=20)
            status = client.request({"op": "status"})[0]
    finally:
        replica.close()
        watch.stop()
        assert classifier.stop() == 0
        secure.stop()
    assert forgotten["event"] == "forgotten"
    assert [json.loads(p)["reason"] for _t, p in letters] == ["not-allowed"]
    assert status["people"] == 1, "Colin_Powell is still enrolled: the replica account's forget was refused"
    store = sqlite3.connect(classifier.store_dir / "auth" / "gallery.sqlite")
    actors = store.execute("SELECT actor FROM audit WHERE op = 'forget'").fetchall()
    store.close()
    assert actors and {a for (a,) in actors} == {"admin"}, actors
