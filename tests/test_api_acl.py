"""The REST API under the shipped broker ACL (TLS, passwords, roles): as the operator account it searches by
photo; an embedding, which the ACL does not let that account publish, is refused at once with the topic named."""

from __future__ import annotations

import time
from pathlib import Path

from facewire.config import MqttSettings
from harness.processes import RunningClassifier
from tests.api_support import RunningApi, error_code
from tests.broker_support import start_secure_broker
from tests.gallery_support import KNOWN, make_gallery, photos


def account_env(settings: MqttSettings) -> dict[str, str]:
    return {
        "FACEWIRE_MQTT__URL": settings.url,
        "FACEWIRE_MQTT__USERNAME": str(settings.username),
        "FACEWIRE_MQTT__PASSWORD_FILE": str(settings.password_file),
        "FACEWIRE_MQTT__TLS_CA": str(settings.tls_ca),
        "FACEWIRE_MQTT__TLS_CERT": str(settings.tls_cert),
        "FACEWIRE_MQTT__TLS_KEY": str(settings.tls_key),
    }


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
        deadline = time.monotonic() + 30
        while True:
            with photos(KNOWN / "Tony_Blair")[5].open("rb") as photo:
                answer = api.call("POST", "/recognize", key, files={"image": photo})
            if answer.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
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
