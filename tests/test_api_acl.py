"""The REST API under the shipped broker ACL (TLS, passwords, roles). Logged in as its own account ``api`` (the
deployment's): it searches by photo, recognises an embedding (published as node ``api``), renames and forgets a
subject, and the classifier records ``api`` as the actor. Logged in as the operator account ``admin``: it searches
by photo; an embedding, which the ACL does not let that account publish, is refused at once with the topic named."""

from __future__ import annotations

import time
from pathlib import Path

import requests

from classifier_service.gallery.factory import open_gallery_store
from facewire.faces import FaceAnalyzer
from harness.processes import RunningClassifier
from tests.api_support import RunningApi, error_code
from tests.broker_support import account_env, start_secure_broker
from tests.gallery_support import KNOWN, largest_embedding, make_gallery, photos


def recognise_photo(api: RunningApi, key: str, person: str) -> requests.Response:
    """POST /recognize with a photo of ``person`` until the classifiers answer (30 s)."""
    deadline = time.monotonic() + 30
    while True:
        with photos(KNOWN / person)[5].open("rb") as photo:
            answer = api.call("POST", "/recognize", key, files={"image": photo})
        if answer.status_code == 200 or time.monotonic() > deadline:
            return answer
        time.sleep(0.5)


def test_the_api_under_its_own_account(tmp_path: Path, analyzer: FaceAnalyzer) -> None:
    secure = start_secure_broker(tmp_path, ["admin", "classifier", "api"])
    admin, service = secure.settings("admin"), secure.settings("classifier")
    people = ("Colin_Powell", "Tony_Blair")
    gallery = make_gallery(tmp_path / "gallery", {p: photos(KNOWN / p)[:4] for p in people})
    classifier = RunningClassifier(service.url, gallery, tmp_path, env=account_env(service), watch=admin)
    account = secure.settings("api")
    api = RunningApi(account.url, tmp_path, env=account_env(account))
    try:
        classifier.start()
        key = api.add_key("ops", "admin")
        api.start()
        answer = recognise_photo(api, key, "Tony_Blair")
        assert answer.status_code == 200, answer.text
        assert [f["name"] for f in answer.json()["faces"]] == ["Tony_Blair"]

        vector = largest_embedding(analyzer, photos(KNOWN / "Colin_Powell")[5])
        body = {"embedding": [float(v) for v in vector], "model": answer.json()["model"]}
        named = api.call("POST", "/recognize", key, json=body)
        assert named.status_code == 200, named.text
        assert [f["name"] for f in named.json()["faces"]] == ["Colin_Powell"]

        renamed = api.call("PATCH", "/subjects/Colin_Powell", key, json={"name": "General Powell"})
        assert renamed.status_code == 200, renamed.text
        forgotten = api.call("DELETE", "/subjects/Tony_Blair", key)
        assert forgotten.status_code == 200 and forgotten.json()["forgotten"], forgotten.text
        subjects = api.call("GET", "/subjects", key)
        assert [s["name"] for s in subjects.json()["subjects"]] == ["General Powell"], subjects.text
    finally:
        api.stop()
        classifier.stop()
        secure.stop()
    audit = open_gallery_store(classifier.store_dir / classifier.instance).audit_events()
    actors = {(e["op"], e["actor"]) for e in audit if e["op"] in ("rename", "forget")}
    assert actors == {("rename", "api"), ("forget", "api")}, audit  # the broker account, as it records admin


def test_the_api_as_operator_under_the_role_acl(tmp_path: Path) -> None:
    secure = start_secure_broker(tmp_path, ["admin", "classifier"])
    admin, service = secure.settings("admin"), secure.settings("classifier")
    gallery = make_gallery(tmp_path / "gallery", {"Tony_Blair": photos(KNOWN / "Tony_Blair")[:4]})
    classifier = RunningClassifier(service.url, gallery, tmp_path, env=account_env(service), watch=admin)
    api = RunningApi(admin.url, tmp_path, env=account_env(admin))
    try:
        classifier.start()
        key = api.add_key("acl", "recognize")
        api.start()
        answer = recognise_photo(api, key, "Tony_Blair")
        assert answer.status_code == 200, answer.text
        assert [f["name"] for f in answer.json()["faces"]] == ["Tony_Blair"]

        body = {"embedding": [1.0] + [0.0] * 127, "model": answer.json()["model"]}
        started = time.monotonic()
        refused = api.call("POST", "/recognize", key, json=body)
        assert refused.status_code == 503 and error_code(refused) == "no-classifier", refused.text
        assert "facewire/embeddings/api" in refused.json()["error"]["message"]
        assert time.monotonic() - started < 5  # the broker's refusal, not the command timeout
    finally:
        api.stop()
        classifier.stop()
        secure.stop()
