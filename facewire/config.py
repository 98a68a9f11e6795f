"""Configuration: one typed model per service, from TOML, environment and CLI flags.

Precedence, lowest to highest: built-in defaults < TOML file (``--config`` or
``FACEWIRE_CONFIG``) < environment (``FACEWIRE_<SECTION>__<FIELD>``, e.g.
``FACEWIRE_CLASSIFIER__THRESHOLD=0.5``) < command-line flags. Unknown keys are
rejected. ``facewire config reference`` prints every option with its default.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from facewire.errors import ConfigError

log = logging.getLogger(__name__)

# The TOML file ``load_settings`` was given, seen by the settings sources below; the environment is left alone.
_config_file: ContextVar[str | None] = ContextVar("facewire_config_file", default=None)
DEFAULT_CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "facewire"
DEFAULT_STATE_DIR = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "facewire"


class Section(BaseModel):
    """Base of every config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class MqttSettings(Section):
    url: str = Field("mqtt://127.0.0.1:1883", description="Broker URL: mqtt://HOST:PORT or mqtts://HOST:PORT")
    username: str | None = Field(None, description="Broker user name (none: anonymous)")
    password: str | None = Field(None, description="Broker password; prefer the environment variable")
    password_file: Path | None = Field(
        None, description="File holding the broker password (e.g. a Docker secret); used when set"
    )
    topic_prefix: str = Field("facewire", description="First level of every topic", min_length=1)
    keepalive: int = Field(30, description="MQTT keep-alive in seconds", ge=5, le=3600)
    connect_timeout: float = Field(10.0, description="Seconds to wait for the broker's CONNACK", gt=0)
    tls_ca: Path | None = Field(None, description="CA certificate for mqtts://")
    tls_cert: Path | None = Field(None, description="Client certificate for mqtts://")
    tls_key: Path | None = Field(None, description="Client key for mqtts://")
    bulk_reads: bool = Field(
        True,
        description="Read the broker's socket in bulk (facewire.bulk_client: a third of paho's CPU per message); "
        "false: paho's own reader",
    )


class ModelSettings(Section):
    embedder: str = Field("sface-2021dec", description="Embedder model id from the registry, or a path to an ONNX file")
    detector: Literal["yunet", "haar", "mediapipe"] = Field(
        "yunet", description="Face detector: yunet (5 landmarks), haar (the seed's cascade), mediapipe (extra)"
    )
    mask: Literal["none", "facemesh"] = Field(
        "none", description="Background mask of face crops: none, or facemesh (MediaPipe Face Mesh oval, extra)"
    )
    threads: int = Field(1, description="Inference threads per model (1 is fastest on 2 cores)", ge=1, le=64)
    cache_dir: Path = Field(DEFAULT_CACHE_DIR, description="Where converted models and gallery caches live")


class EdgeSettings(Section):
    node_id: str = Field("edge", description="This node's id (one topic level)")
    source: str = Field("0", description="Video file, camera index, rtsp:// or http:// URL, or image folder")
    max_fps: float = Field(0.0, description="Frames per second to process at most (0: as fast as possible)", ge=0)
    skip_frames: int = Field(0, description="Frames to skip after each processed frame", ge=0)
    min_face: int = Field(40, description="Smallest face side in pixels that is embedded", ge=8)
    det_threshold: float = Field(0.7, description="Detector score threshold", gt=0, lt=1)
    track_iou: float = Field(0.3, description="IoU that continues a track between frames", gt=0, lt=1)
    track_max_age: float = Field(
        1.0, description="Seconds a track survives without a detection (at least until the next frame)", gt=0
    )
    dedup_cosine: float = Field(
        0.9, description="Do not republish a track's face this similar to its last one", gt=0, le=1
    )
    refresh_seconds: float = Field(5.0, description="Embed and publish a track at least this often", gt=0)
    better_face: float = Field(
        1.3, description="Embed a track's face again when it scores this many times its best embedded face", gt=1
    )
    min_sharpness: float = Field(20.0, description="Blur gate: least Laplacian variance of the aligned face", ge=0)
    max_yaw: float = Field(0.6, description="Head-turn gate: most nose offset over the eye distance", gt=0)
    max_pitch: float = Field(0.25, description="Head-tilt gate: most nose offset from its frontal height", gt=0)
    full_scan_seconds: float = Field(
        0.5,
        description="While all tracked faces are large, detect at half size; full size this often (0: always)",
        ge=0,
    )
    heartbeat_seconds: float = Field(10.0, description="Interval of the status heartbeat", gt=0)
    state_dir: Path = Field(DEFAULT_STATE_DIR, description="Where the node keeps its sequence counter")
    spool_dir: Path | None = Field(None, description="Folder of the spool NODE.spool.sqlite (default: state_dir)")
    spool_max_messages: int = Field(
        200_000, description="Embeddings the spool holds before dropping the oldest (~0.5 KB each)", ge=1
    )
    spool_fsync: Literal["always", "normal", "off"] = Field(
        "normal", description="Spool durability: always (power-loss safe), normal (crash safe), off"
    )
    drain_timeout: float = Field(30.0, description="Seconds to wait for the spool to drain at exit", ge=0)
    resend_seconds: float = Field(
        30.0,
        description="After a reconnect, re-send what the broker acknowledged this long before the connection was lost",
        ge=0,
    )
    unknown_thumbnails: bool = Field(
        False, description="Privacy opt-in: send a small JPEG of faces the classifier finds unknown (for facewire web)"
    )
    thumbnail_side: int = Field(64, description="Side in pixels of those thumbnails (about 1-3 KB)", ge=32, le=160)


class ClassifierSettings(Section):
    gallery: Path = Field(Path("gallery"), description="Enrolment photos as GALLERY/<person>/[<subdir>/]*.jpg")
    threshold: float | None = Field(
        None,
        description="Cosine score at or above which a face is named (unset: the embedder's calibrated default)",
        ge=-1,
        le=1,
    )
    top_k: int = Field(5, description="Nearest enrolled embeddings searched per face", ge=1, le=100)
    batch_max: int = Field(64, description="Most embeddings searched in one FAISS call", ge=1, le=4096)
    batch_wait_ms: float = Field(5.0, description="How long to wait to fill a batch", ge=0)
    track_frames: int = Field(
        2,
        description="Judge each face of a video track on the mean of its track's N largest faces so far (1: alone)",
        ge=1,
        le=16,
    )
    track_gap_seconds: float = Field(10.0, description="A track unseen this long starts afresh", gt=0)
    quality_slopes: tuple[float, float, float] = Field(
        (0.0, 0.0, 0.021),
        description="Rise of the score needed per unit of size, sharpness and pose shortfall (docs/accuracy.md)",
    )
    cohort_weight: float | None = Field(
        0.0,
        description="Rise of the score needed per unit of the face's mean score against the other people enrolled "
        "(cohort normalisation, docs/accuracy.md; 0: off, the default; SFace's fitted weight is 1.03, its "
        "reference and prior then come from the model registry unless set)",
        ge=0,
        le=2,
    )
    cohort_reference: float | None = Field(
        None,
        description="The strangers' mean score against enrolled people, where the cohort term is 0 "
        "(unset: the embedder's fitted value, else 0)",
        ge=-1,
        le=1,
    )
    cohort_prior: float | None = Field(
        None,
        description="People's worth of weight the cohort mean is shrunk towards the reference with "
        "(unset: the embedder's fitted value, else 10)",
        ge=0,
    )
    faiss_threads: int = Field(
        1,
        description="FAISS search threads (1: a batch is searched faster than with OpenMP on a small, shared CPU)",
        ge=1,
        le=64,
    )
    queue_max: int = Field(4096, description="Messages held in memory before the broker is paced", ge=16)
    share_group: str = Field(
        "classifiers",
        description="Shared-subscription group of the replicas ('': plain subscription, one classifier only;"
        " mosquitto restores it after a restart, a shared one only when its subscriber is back)",
    )
    instance: str = Field("", description="Replica id (default: host name and process id)")
    max_future_seconds: float = Field(
        300.0, description="Dead-letter embeddings whose capture time is this far ahead of ours (0: off)", ge=0
    )
    max_age_seconds: float = Field(
        0.0, description="Dead-letter embeddings older than this (0: off; keep above the edges' spool horizon)", ge=0
    )
    resend_seconds: float = Field(
        30.0,
        description="After a reconnect, re-publish results from this long before the connection was lost (> autosave)",
        ge=0,
    )
    replay_max_seconds: float = Field(
        300.0,
        description="A subscriber whose session the broker lost gets results again from at most this far back",
        ge=0,
    )


class GallerySettings(Section):
    store_dir: Path = Field(
        DEFAULT_STATE_DIR / "gallery", description="Gallery store (SQLite + FAISS index), one subfolder per replica"
    )
    database_url: str = Field(
        "", description="postgresql://...: one gallery shared by all replicas (schema gallery); '': SQLite per replica"
    )
    min_face: int = Field(48, description="Smallest face side in pixels accepted for enrolment", ge=8)
    min_sharpness: float = Field(25.0, description="Least Laplacian variance of an enrolment face crop", ge=0)
    second_face_ratio: float = Field(
        0.6, description="A second face at least this fraction of the largest's size rejects a photo", gt=0, le=1
    )
    max_yaw: float = Field(0.6, description="Enrolment pose check: most head turn (nose offset / eye distance)", gt=0)
    max_pitch: float = Field(0.25, description="Enrolment pose check: most head tilt (nose height offset)", gt=0)
    min_contrast: float = Field(20.0, description="Least grey-level spread (std) of the aligned face crop", ge=0)
    min_face_brightness: float = Field(
        0.5, description="Back-light check: least face brightness as a fraction of the whole photo's", ge=0
    )
    duplicate_cosine: float = Field(
        0.97, description="Cosine at which a new embedding duplicates an enrolled one", gt=0, le=1
    )
    enrol_flip: bool = Field(
        False, description="Enrol the mean of each face's and its mirror image's embeddings (docs/accuracy.md)"
    )
    enrol_face_sizes: tuple[int, ...] = Field(
        (), description="Also enrol each photo as a camera shows it at these face sizes in pixels (docs/accuracy.md)"
    )
    probe_memory: int = Field(10_000, description="Recent probe embeddings kept for reject/relabel", ge=0)
    unknown_max: int = Field(20_000, description="Unknown embeddings kept for clustering (oldest dropped)", ge=0)
    unknown_retention_days: float = Field(30.0, description="Drop unknown embeddings older than this", gt=0)
    cluster_cosine: float = Field(0.5, description="Cosine to a cluster centre that joins an unknown to it", gt=0, lt=1)
    command_timeout: float = Field(60.0, description="Seconds the CLI waits for a gallery event", gt=0)


DEFAULT_RESULTS_DB = DEFAULT_STATE_DIR / "results.sqlite"


class RecorderSettings(Section):
    database: Path = Field(DEFAULT_RESULTS_DB, description="SQLite file of the detection log (shared with alerts)")
    database_url: str = Field(
        "", description="sqlite:///FILE or postgresql://user@host/db (?password_file=F); '': the database file"
    )
    batch_max: int = Field(500, description="Most results written in one transaction", ge=1, le=100_000)
    batch_wait_ms: float = Field(200.0, description="How long to gather a batch before writing it", ge=0)
    retention_days: float = Field(30.0, description="Delete results older than this many days (0: keep)", ge=0)
    retention_rows: int = Field(10_000_000, description="Keep at most this many results (0: no limit)", ge=0)
    retention_interval: float = Field(300.0, description="Seconds between retention passes", gt=0)
    share_group: str = Field("recorders", description="Shared-subscription group of the replicas ('': none)")
    instance: str = Field("", description="Replica id; a stable id keeps a persistent session")


class AccessRule(Section):
    person: str = Field("*", description="Person the rule is about ('*': every known person)", min_length=1)
    nodes: list[str] = Field(default_factory=list, description="Nodes where the person may be seen (empty: all)")
    hours: str = Field("", description="Allowed local time span HH:MM-HH:MM, may wrap midnight ('': any time)")


class AlertSettings(Section):
    database: Path = Field(DEFAULT_RESULTS_DB, description="SQLite file holding alerts and incidents")
    database_url: str = Field(
        "", description="sqlite:///FILE or postgresql://user@host/db (?password_file=F); '': the database file"
    )
    unknown_count: int = Field(3, description="Unknown results on one node that raise an alert (0: rule off)", ge=0)
    unknown_window: float = Field(30.0, description="Seconds within which unknown_count results must fall", gt=0)
    watchlist: list[str] = Field(default_factory=list, description="People whose every sighting raises an alert")
    access: list[AccessRule] = Field(default_factory=list, description="Where and when known people may be seen")
    timezone: str = Field("", description="IANA time zone for access hours ('': the host's local time)")
    cooldown: float = Field(300.0, description="Seconds of quiet before the same subject raises a new alert", ge=0)
    webhook_url: str | None = Field(None, description="POST every alert as JSON to this URL")
    webhook_timeout: float = Field(5.0, description="Seconds per webhook attempt", gt=0, le=120)
    webhook_retries: int = Field(3, description="Webhook attempts after the first one fails", ge=0, le=20)
    webhook_queue: int = Field(1000, description="Alerts waiting for the webhook before new ones are dropped", ge=1)
    apprise_urls: list[str] = Field(
        default_factory=list,
        description="Also notify these Apprise URLs (ntfy://, tgram://, gotify://, mailtos://, ...; `notify` extra)",
    )
    share_group: str = Field("alerts", description="Shared-subscription group of the replicas ('': none)")
    instance: str = Field("", description="Replica id; a stable id keeps a persistent session")


class StatsSettings(Section):
    target_far: float = Field(1e-3, description="False-accept rate the recommended threshold aims at", gt=0, lt=1)
    grid_step: float = Field(0.01, description="Step of the published threshold grid", ge=0.001, le=0.1)
    publish_interval: float = Field(5.0, description="Least seconds between two published statistics", gt=0)
    gallery_poll: float = Field(60.0, description="Seconds between checks of the gallery folder for changes", gt=0)
    confirmations_poll: float = Field(10.0, description="Seconds between reads of new operator confirmations", gt=0)
    instance: str = Field("", description="Instance id (default: host name and process id)")


class NodeSettings(Section):
    stale_after: float = Field(35.0, description="Seconds without a heartbeat before an online node is stale", gt=0)
    publish_interval: float = Field(5.0, description="Seconds between published node summaries", gt=0)


class ForwardSettings(Section):
    url: str = Field("", description="HTTP(S) endpoint every forwarded result is POSTed to as JSON ('': forwarder off)")
    queue: Path = Field(DEFAULT_STATE_DIR / "forward.sqlite", description="Durable outbox of results not yet delivered")
    people: list[str] = Field(default_factory=list, description="Forward only results naming these people (empty: all)")
    nodes: list[str] = Field(default_factory=list, description="Forward only results from these nodes (empty: all)")
    only: Literal["all", "known", "unknown"] = Field("all", description="Forward all results, or only known / unknown")
    timeout: float = Field(10.0, description="Seconds to wait for the endpoint's answer", gt=0)
    backoff: float = Field(1.0, description="First pause after a failed delivery (doubles each time)", gt=0)
    backoff_max: float = Field(60.0, description="Longest pause between delivery attempts", gt=0)
    batch_max: int = Field(200, description="Most results committed to the outbox in one transaction", ge=1)
    share_group: str = Field("forwarders", description="Shared-subscription group of the replicas ('': none)")
    instance: str = Field("", description="Replica id; a stable id keeps a persistent session")


class HomeAssistantSettings(Section):
    enabled: bool = Field(False, description="Publish Home Assistant MQTT discovery from `facewire monitor`")
    discovery_prefix: str = Field("homeassistant", description="Home Assistant's MQTT discovery prefix", min_length=1)
    instance: str = Field("facewire", description="Id of this bridge in discovery unique_ids and its status topic")


class WebSettings(Section):
    host: str = Field("127.0.0.1", description="Address `facewire web` binds to (loopback unless you mean it)")
    port: int = Field(8080, description="Port of the web dashboard", ge=1, le=65535)
    users_file: Path = Field(
        DEFAULT_STATE_DIR / "web-users.json", description="Dashboard accounts (argon2 hashes), made by web add-user"
    )
    secret_file: Path = Field(
        DEFAULT_STATE_DIR / "web-secret", description="Key that signs session cookies (created 0600 if missing)"
    )
    data_dir: Path = Field(DEFAULT_STATE_DIR / "web", description="Thumbnails of photos enrolled from the dashboard")
    cookie_secure: bool = Field(True, description="Send the session cookie over HTTPS only (browsers allow localhost)")
    session_hours: float = Field(12.0, description="Hours a login lasts", gt=0, le=24 * 30)
    login_attempts: int = Field(
        5, description="Failed logins per client address, and per user from one address, before a lockout", ge=1
    )
    login_window: float = Field(
        300.0, description="Seconds over which failed logins are counted; the first lockout lasts as long", gt=0
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or networks (CIDR) of reverse proxies whose X-Forwarded-For names the client",
    )
    max_photo_bytes: int = Field(
        10 * 1024 * 1024, description="Largest enrolment photo accepted by upload", ge=1024, le=50 * 1024 * 1024
    )
    max_photos: int = Field(20, description="Most photos in one upload", ge=1, le=64)
    thumbnail_hours: float = Field(
        24.0, description="Hours the dashboard keeps thumbnails of unknown faces (sent only by opted-in edges)", gt=0
    )


class Settings(BaseSettings):
    """All of facewire's configuration."""

    model_config = SettingsConfigDict(env_prefix="FACEWIRE_", env_nested_delimiter="__", extra="forbid")

    mqtt: MqttSettings = MqttSettings()
    model: ModelSettings = ModelSettings()
    edge: EdgeSettings = EdgeSettings()
    classifier: ClassifierSettings = ClassifierSettings()
    gallery: GallerySettings = GallerySettings()
    recorder: RecorderSettings = RecorderSettings()
    alerts: AlertSettings = AlertSettings()
    stats: StatsSettings = StatsSettings()
    nodes: NodeSettings = NodeSettings()
    forward: ForwardSettings = ForwardSettings()
    homeassistant: HomeAssistantSettings = HomeAssistantSettings()
    web: WebSettings = WebSettings()

    def classifier_threshold(self) -> float:
        """``classifier.threshold`` if set, else the calibrated default of ``model.embedder`` (the registry's)."""
        if self.classifier.threshold is not None:
            return self.classifier.threshold
        from facewire.models.registry import default_threshold  # lazy: the registry imports onnx

        return default_threshold(self.model.embedder)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = _config_file.get() or os.environ.get("FACEWIRE_CONFIG")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(toml_path)))
        return tuple(sources)


# FACEWIRE_* variables that are not settings: the config file, compose interpolation, test and bench knobs.
OTHER_VARIABLES = frozenset(
    {
        "FACEWIRE_CONFIG",
        "FACEWIRE_IMAGE",
        "FACEWIRE_MQTT_PORT",
        "FACEWIRE_MQTTS_PORT",
        "FACEWIRE_WEB_PORT",
        "FACEWIRE_API_PORT",
        "FACEWIRE_KEY",
        "FACEWIRE_SHARED_DATA",
        "FACEWIRE_BENCH_DIR",
        "FACEWIRE_WITH_EXPORT",
        "FACEWIRE_WEB_SCREENSHOTS",
    }
)
_warned: set[str] = set()


def unknown_variables(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """``FACEWIRE_*`` variables of ``environ`` that match no setting, each with the nearest setting's name."""
    known = {env for _key, env, _default, _text in reference_rows()}
    sections = {f"FACEWIRE_{name.upper()}" for name in Settings.model_fields}  # a whole section as JSON
    unknown = sorted(n for n in environ if n.startswith("FACEWIRE_") and n not in known | sections | OTHER_VARIABLES)
    return [(name, next(iter(difflib.get_close_matches(name, known, n=1)), None)) for name in unknown]


def _warn_unknown_variables() -> None:
    for name, near in unknown_variables(os.environ):
        if name not in _warned:
            _warned.add(name)
            hint = f" (did you mean {near}?)" if near else ""
            log.warning("environment variable %s matches no setting and is ignored%s", name, hint)


def load_settings(config_file: Path | None = None, overrides: dict[str, dict[str, Any]] | None = None) -> Settings:
    """Load settings from ``config_file`` (or FACEWIRE_CONFIG), the environment and flag ``overrides``.

    ``overrides`` maps section -> field -> value; ``None`` values (flags not given) are ignored. A
    ``FACEWIRE_*`` variable that matches no setting is logged as a warning (once per process).
    """
    _warn_unknown_variables()
    cleaned = {
        section: {key: value for key, value in fields.items() if value is not None}
        for section, fields in (overrides or {}).items()
    }
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"config file not found: {config_file}")
    token = _config_file.set(str(config_file) if config_file is not None else None)
    try:
        return Settings(**{k: v for k, v in cleaned.items() if v})  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read configuration: {exc}") from exc
    finally:
        _config_file.reset(token)


def _describe(exc: ValidationError) -> str:
    lines = [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
    return "invalid configuration: " + "; ".join(lines)


def _readable_default(default: object) -> str:
    """A default as the reference shows it: cache and state folders as ~/..., not this machine's home."""
    if default is None:
        return ""
    text = str(default)
    for folder, shown in ((DEFAULT_CACHE_DIR, "~/.cache/facewire"), (DEFAULT_STATE_DIR, "~/.local/state/facewire")):
        if isinstance(default, Path) and default.is_relative_to(folder):
            return shown + text[len(str(folder)) :]
    return text


def reference_rows() -> list[tuple[str, str, str, str]]:
    """(key, environment variable, default, description) for every option, generated from the schema."""
    rows = []
    for section_name, section_field in Settings.model_fields.items():
        section_type = section_field.annotation
        assert isinstance(section_type, type) and issubclass(section_type, Section)
        for name, info in section_type.model_fields.items():
            default = info.get_default(call_default_factory=True)
            rows.append(
                (
                    f"{section_name}.{name}",
                    f"FACEWIRE_{section_name.upper()}__{name.upper()}",
                    _readable_default(default),
                    info.description or "",
                )
            )
    return rows
