"""Every role x every topic, publish and subscribe, against a real mosquitto running the shipped secure config.

The broker decides who may do what (issue 18.6): the PUBACK reason code of a
QoS 1 publish says whether it was taken, and a message reaches a subscriber
only if the ACL lets that account read it. The expected matrix below is the
design of broker/acl written out by hand; the broker must agree with it cell by cell.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from facewire.errors import ConfigError
from facewire.topics import Topics
from facewire_console.broker_auth import ACL_FILE, ROLE_ACCOUNTS, add_node
from tests.broker_support import ROLES, RoleClient, SecureBroker, start_secure_broker

NODES = ("cam-1", "cam-2")
ACCOUNTS = (*ROLES, *NODES)
REFUSED = 0x80
T = Topics()
HA_STATE = T.ha_node_state("cam-1")
HA_PERSON = T.ha_person_state("alex")
HA_ATTRIBUTES = T.ha_attributes(HA_STATE)
HA_CONFIG = "homeassistant/sensor/facewire/facewire_node_cam_1_last_person/config"
HA_BIRTH = "homeassistant/status"
FRIGATE_EVENTS = "frigate/events"  # Frigate's MQTT (docs.frigate.video/integrations/mqtt), the bridge's input
FRIGATE_STATE = "frigate/front_door/person"


def own(account: str) -> dict[str, str]:
    """The topics named after ``account``."""
    return {
        "embeddings": T.embeddings(account),
        "status": T.node_status(account),
        "thumbnails": T.thumbnails(account),
        "results": T.results(account),
        "command": T.gallery_cmd(account),
    }


SHARED = [
    T.alerts("cam-1"),
    T.deadletter("classifier"),
    T.deadletter("recorder"),
    T.service_status("classifier", "a"),
    T.service_status("recorder", "a"),
    T.service_status("homeassistant", "facewire"),
    T.stats_thresholds(),
    T.stats_nodes(),
    T.gallery_events(),
    T.results_replay(),
    T.identify_request(),
    T.identify_response("x"),
    HA_STATE,
    HA_PERSON,
    HA_ATTRIBUTES,
    HA_CONFIG,
    HA_BIRTH,
    FRIGATE_EVENTS,
    FRIGATE_STATE,
]
TOPICS = [topic for account in ACCOUNTS for topic in own(account).values()] + SHARED
STATUSES = {
    T.service_status("classifier", "a"),
    T.service_status("recorder", "a"),
    T.service_status("homeassistant", "facewire"),
}

WRITES: dict[str, set[str]] = {
    "admin": {T.gallery_cmd("admin"), T.identify_request()},
    "facewire": {
        T.alerts("cam-1"),
        T.stats_thresholds(),
        T.stats_nodes(),
        T.service_status("recorder", "a"),
        T.service_status("homeassistant", "facewire"),
        T.deadletter("recorder"),
        T.results_replay(),
        HA_STATE,
        HA_PERSON,
        HA_ATTRIBUTES,
        HA_CONFIG,
        HA_BIRTH,
    },
    "classifier": {T.results(a) for a in ACCOUNTS}
    | {
        T.deadletter("classifier"),
        T.service_status("classifier", "a"),
        T.gallery_cmd("classifier"),
        T.gallery_events(),
        T.identify_response("x"),
    },
    "viewer": set(),
    "homeassistant": {HA_BIRTH},
    "api": {T.embeddings("api"), T.gallery_cmd("api"), T.identify_request()},
    "frigate": {T.embeddings("frigate")},
    "frigate_nvr": {FRIGATE_EVENTS, FRIGATE_STATE},
    **{node: {T.embeddings(node), T.node_status(node), T.thumbnails(node)} for node in NODES},
}
PUBLISHED = set().union(*WRITES.values())
FACEWIRE = {t for t in PUBLISHED if t.startswith("facewire/")}
READS: dict[str, set[str]] = {
    "admin": FACEWIRE,
    "facewire": FACEWIRE | {HA_CONFIG, HA_BIRTH},
    "classifier": {T.embeddings(n) for n in (*NODES, "api", "frigate")}
    | {T.gallery_cmd(a) for a in ("admin", "api", "classifier")}
    | {T.gallery_events(), T.identify_request(), T.results_replay()}
    | {T.service_status("classifier", "a"), T.results("classifier")},
    "viewer": {T.results(a) for a in ACCOUNTS}
    | {T.alerts("cam-1"), T.stats_thresholds(), T.stats_nodes(), HA_STATE, HA_PERSON, HA_ATTRIBUTES}
    | {T.node_status(n) for n in NODES}
    | STATUSES,
    "homeassistant": {HA_BIRTH, HA_CONFIG, HA_STATE, HA_PERSON, HA_ATTRIBUTES}
    | {T.service_status("homeassistant", "facewire")}
    | {T.node_status(n) for n in NODES}
    | {T.results("homeassistant")},
    "api": {T.results("api"), T.gallery_events(), T.identify_response("x"), T.stats_thresholds()}
    | {T.node_status(n) for n in NODES}
    | {T.service_status("classifier", "a")},
    "frigate": {T.results("frigate"), FRIGATE_EVENTS},
    "frigate_nvr": {FRIGATE_EVENTS, FRIGATE_STATE},
    **{node: {T.results(node), T.node_status(node)} for node in NODES},
}


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    broker = start_secure_broker(tmp_path_factory.mktemp("roles"), list(ACCOUNTS))
    yield broker
    broker.stop()


def test_every_role_publishes_and_reads_exactly_its_topics(secure: SecureBroker) -> None:
    clients = {account: RoleClient(secure.settings(account), f"matrix-{account}") for account in ACCOUNTS}
    try:
        assert {a: c.connack for a, c in clients.items()} == dict.fromkeys(ACCOUNTS, 0)
        subacks = {(a, t): c.subscribe(t) for a, c in clients.items() for t in TOPICS}
        written = {a: {t for t in TOPICS if c.publish(t, f"{a}->{t}".encode()) < REFUSED} for a, c in clients.items()}
        time.sleep(1.0)
        read = {a: c.topics_received() for a, c in clients.items()}
    finally:
        for client in clients.values():
            client.close()
    # mosquitto 2.0 grants every SUBSCRIBE and applies the read ACL to each message it would deliver.
    assert set(subacks.values()) == {1}
    for account in ACCOUNTS:
        assert written[account] == WRITES[account], (account, written[account] ^ WRITES[account])
    for account in ACCOUNTS:
        assert read[account] == READS[account], (account, read[account] ^ READS[account])


def test_no_account_publishes_as_another_node_and_only_admin_and_api_command(secure: SecureBroker) -> None:
    """The two claims of issue 18.6 read off the matrix: forged embeddings and commands of other accounts."""
    for account in ACCOUNTS:
        forged = {t for t in WRITES[account] if T.node_of(t, "embeddings") not in (None, account)}
        assert not forged, account
    # the REST API and the Frigate bridge publish embeddings as the one node of their own name; no other role does
    embedders = {a for a in ROLES if WRITES[a] & {T.embeddings(r) for r in ROLES}}
    assert embedders == {"api", "frigate"}
    commanders = {a for a in ACCOUNTS if any(T.command_account(t) for t in WRITES[a])}
    assert commanders == {"admin", "api", "classifier"}  # the classifier forwards replica-to-replica ops only
    assert all(T.command_account(t) == a for a in ACCOUNTS for t in WRITES[a] if T.command_account(t))


def test_the_role_accounts_are_the_acl_sections() -> None:
    """``facewire broker add-account`` offers (add-node refuses) exactly the accounts broker/acl has a section for."""
    sections = re.findall(r"(?m)^user (\S+)$", ACL_FILE.read_text())
    assert tuple(sections) == ROLES == ROLE_ACCOUNTS
    for role in ROLES:
        with pytest.raises(ConfigError, match="role account"):
            add_node(Path("/nonexistent/passwd"), role, Path("/nonexistent"))


def test_the_secure_config_has_no_anonymous_listener(secure: SecureBroker) -> None:
    config = (secure.broker.workdir / "mosquitto.conf").read_text()
    assert re.findall(r"(?m)^listener .*$", config) == [f"listener {secure.port}"]
    assert re.findall(r"(?m)^allow_anonymous .*$", config) == ["allow_anonymous false"]
    anonymous = RoleClient(secure.settings(None, client_cert="admin"), "anonymous")
    try:
        assert anonymous.connack >= REFUSED
    finally:
        anonymous.close()


def test_the_command_topic_names_its_account() -> None:
    assert T.gallery_cmd("admin") == "facewire/gallery/cmd/admin"
    assert T.command_account("facewire/gallery/cmd/admin") == "admin"
    for topic in ("facewire/gallery/cmd", "facewire/gallery/cmd/a/b", "facewire/gallery/cmd/+", "other/gallery/cmd/x"):
        assert T.command_account(topic) is None, topic


def test_matrix_covers_every_topic_builder() -> None:
    """A topic added to facewire/topics.py must get a row here (and a line in broker/acl)."""
    builders = {name for name in vars(Topics) if not name.startswith("_") and callable(getattr(Topics, name))}
    covered = {"embeddings", "node_status", "thumbnails", "results", "gallery_cmd", "alerts", "deadletter"}
    covered |= {"service_status", "stats_thresholds", "stats_nodes", "gallery_events", "identify_request"}
    covered |= {"identify_response", "ha_node_state", "ha_person_state", "ha_attributes", "results_replay"}
    wildcards_and_parsers = {
        n for n in builders if n.endswith(("_all", "_shared")) or n in {"node_of", "command_account"}
    }
    assert builders - wildcards_and_parsers == covered
