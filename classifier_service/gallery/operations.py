"""Apply one gallery command: a list of events to publish and of commands to forward to every replica.

Commands that only one replica can act on (``reject``/``relabel`` of a result it
classified, ``name-cluster`` of its own cluster) are turned by that replica into
replica-neutral commands (``negative``, ``enroll`` with embeddings) and
forwarded on gallery/cmd, so every replica applies the same change.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from classifier_service.gallery.clusters import summarise
from classifier_service.gallery.enrolment import PhotoCheck, check_image_bytes, near_duplicate
from classifier_service.gallery.erasure import erase_photos, purge_embedding_cache
from classifier_service.gallery.folder_sync import folder_clash, rename_person_folder
from classifier_service.gallery.manager import GalleryManager
from classifier_service.gallery.store import NewEmbedding, vector_source
from classifier_service.matcher import UNKNOWN
from facewire.erasure import erasure_marker
from facewire.schema.gallery import GalleryCommand, GalleryEvent

CLUSTER_MEMBERS_LISTED = 8
CHANGING = frozenset({"enroll", "negative", "forget", "rename", "reload"})  # applied once in a shared gallery


@dataclass
class Outcome:
    events: list[GalleryEvent] = field(default_factory=list)
    forward: list[GalleryCommand] = field(default_factory=list)


def apply_command(manager: GalleryManager, command: GalleryCommand, cache_file: Path | None = None) -> Outcome:
    """Apply ``command`` to this replica's gallery."""
    handler = {
        "enroll": _enroll,
        "negative": _negative,
        "forget": lambda m, c: _forget(m, c, cache_file),
        "reload": _reload,
        "reject": _reject_or_relabel,
        "relabel": _reject_or_relabel,
        "unknowns": _unknowns,
        "name-cluster": _name_cluster,
        "rename": _rename,
        "whereis": _whereis,
        "people": _people,
        "sync": _sync,
        "status": lambda m, c: Outcome([m.event(c, "status", people_list=m.store.people(m.model_id))]),
    }[command.op]
    return handler(manager, command)


def apply_once(manager: GalleryManager, command: GalleryCommand, key: str, cache_file: Path | None = None) -> Outcome:
    """:func:`apply_command`; on a shared gallery a changing command only by the replica (or offline CLI) that
    claims ``key`` first, in one transaction logged for every replica (they serve it through NOTIFY), its
    events then carrying the version served once it committed."""
    if command.op not in CHANGING or manager.shared is None:
        return apply_command(manager, command, cache_file)
    with manager.change(key, command.id) as claimed:
        outcome = apply_command(manager, command, cache_file) if claimed else Outcome()
    now = manager.served(command.id)
    outcome.events = [
        replace(event, gallery_version=now.gallery_version, people=now.people, embeddings=now.embeddings, ts=now.ts)
        for event in outcome.events
    ]
    return outcome


def _enroll(manager: GalleryManager, command: GalleryCommand) -> Outcome:
    if command.embeddings is not None:
        mismatch = _model_mismatch(manager, command, command.embeddings)
        if mismatch:
            return mismatch
        checks = [PhotoCheck(v, "", {}) for v in command.embeddings]
        sources = list(command.sources) or [vector_source(v) for v in command.embeddings]
        origin = "sync" if command.sources else "embedding"
    else:
        policy, analyzer = manager.policy, manager.analyzer()
        checks = [check_image_bytes(analyzer, data, policy, f"image {i}") for i, data in enumerate(command.images)]
        sources = [hashlib.sha256(data).hexdigest() for data in command.images]
        origin = "image"
    results, accepted = _dedup(manager, checks, sources, origin)
    views = view_rows(checks, sources, accepted)
    rows = accepted + views
    with manager.store.transaction():  # the rows and their audit row: both or neither
        added = manager.store.add_embeddings(command.person, manager.model_id, rows, time.time()) if rows else []
        count = sum(added[: len(accepted)])
        details = {"accepted": count, "rejected": len(results) - count}
        manager.store.audit("enroll", command.actor, command.person, details, time.time())
    for item, was_added in zip(accepted, added[: len(accepted)], strict=True):
        if not was_added:
            results[sources.index(item.source)].update(accepted=False, reason="already enrolled")
    if any(added):
        manager.append(command.person, np.stack([a.vector for a, ok in zip(rows, added, strict=True) if ok]))
    event = "enrolled" if count else "rejected"
    return Outcome([manager.event(command, event, person=command.person, accepted=count, results=results)])


def view_rows(checks: list[PhotoCheck], sources: list[str], accepted: list[NewEmbedding]) -> list[NewEmbedding]:
    """The extra views (``gallery.enrol_face_sizes``) of the accepted photos, as rows ``<source>#<tag>``."""
    kept = {item.source: item.origin for item in accepted}
    return [
        row
        for check, source in zip(checks, sources, strict=True)
        if source in kept
        for row in check.view_rows(source, kept[source])
    ]


def _dedup(
    manager: GalleryManager, checks: list[PhotoCheck], sources: list[str], origin: str
) -> tuple[list[dict[str, Any]], list[NewEmbedding]]:
    """Per-item results and the items that pass the near-duplicate check (against the gallery and each other)."""
    known = manager._vectors if manager._vectors.ndim == 2 and len(manager._vectors) else None
    results: list[dict[str, Any]] = []
    accepted: list[NewEmbedding] = []
    for index, (check, source) in enumerate(zip(checks, sources, strict=True)):
        result: dict[str, Any] = {"index": index, "accepted": False, "reason": check.reason, "quality": check.quality}
        if check.vector is not None:
            batch = np.stack([a.vector for a in accepted]) if accepted else None
            duplicate = near_duplicate(check.vector, known, manager.policy.duplicate_cosine)
            duplicate = duplicate or near_duplicate(check.vector, batch, manager.policy.duplicate_cosine)
            if duplicate is not None:
                result["reason"] = f"near-duplicate of an enrolled face (cosine {duplicate:.3f})"
            else:
                result.update(accepted=True, reason="")
                accepted.append(NewEmbedding(source, origin, check.vector))
        results.append(result)
    return results, accepted


def _model_mismatch(manager: GalleryManager, command: GalleryCommand, vectors: np.ndarray) -> Outcome | None:
    if command.model != manager.model_id:
        detail = f"embeddings from {command.model!r}, gallery is {manager.model_id!r}"
        return Outcome([manager.event(command, "error", reason="model-mismatch", detail=detail)])
    if manager.dim and vectors.shape[1] != manager.dim:
        detail = f"dimension {vectors.shape[1]} != {manager.dim}"
        return Outcome([manager.event(command, "error", reason="wrong-dimension", detail=detail)])
    return None


def _negative(manager: GalleryManager, command: GalleryCommand) -> Outcome:
    assert command.embeddings is not None
    mismatch = _model_mismatch(manager, command, command.embeddings)
    if mismatch:
        return mismatch
    now, origin = time.time(), "negative:" + "/".join(map(str, command.result or ("", "")))
    sources = list(command.sources) or [vector_source(v) for v in command.embeddings]
    added = sum(
        manager.store.add_negative(command.person, manager.model_id, NewEmbedding(source, origin, v), now)
        for source, v in zip(sources, command.embeddings, strict=True)
    )
    if added:
        manager.rebuild()
    manager.store.audit("negative", command.actor, command.person, {"added": added}, now)
    return Outcome([manager.event(command, "negative-added", person=command.person, added=added)])


def _forget(manager: GalleryManager, command: GalleryCommand, cache_file: Path | None) -> Outcome:
    person = command.person
    sightings = _unknowns_like(manager, person)
    counts = manager.store.forget(person)  # keeps a tombstone until the photos are gone too
    photos = erase_photos(manager.store, manager.folder, person)
    cached = purge_embedding_cache(cache_file, counts.sources + (photos or [])) if cache_file else 0
    probes = manager.forget_probes(person) + (manager.on_forget(person) if manager.on_forget else 0)
    manager.rebuild()
    removed = {
        "embeddings": counts.embeddings,
        "negatives": counts.negatives,
        "photos": len(photos or []),
        "cache_rows": cached,
        "probes": probes,
        "unknowns": sightings,
    }
    manager.store.audit("forget", command.actor, erasure_marker(person), removed, time.time())
    pending = {} if photos is not None else {"pending": ["photos"]}  # retried at every start-up
    return Outcome([manager.event(command, "forgotten", person=person, removed=removed, **pending)])


def _rename(manager: GalleryManager, command: GalleryCommand) -> Outcome:
    """Every row of ``person`` becomes ``to`` (store, dataset folder, live matcher); never merges two people."""
    old, new = command.person, command.to
    if old not in manager.store.people(manager.model_id):
        return Outcome([manager.event(command, "error", reason="unknown-person", person=old, to=new)])
    counts = None if folder_clash(manager.folder, old, new) else manager.store.rename(old, new)
    if counts is None:
        detail = f"{new!r} is already enrolled (forget them first, or pick another name)"
        return Outcome([manager.event(command, "error", reason="exists", person=old, to=new, detail=detail)])
    counts["folder"] = int(rename_person_folder(manager.folder, old, new))
    counts["probes"] = manager.rename_probes(old, new)
    if manager.on_forget:
        manager.on_forget(old)  # results remembered for redelivery name the old person: classify them again
    manager.rebuild()
    manager.store.audit("rename", command.actor, new, {"old": old, "new": new, **counts}, time.time())
    return Outcome([manager.event(command, "renamed", person=old, to=new, renamed=counts)])


def _reload(manager: GalleryManager, command: GalleryCommand) -> Outcome:
    report = manager.sync()
    manager.store.audit("reload", command.actor, str(manager.folder), {"added": report.added}, time.time())
    fields = {"added": report.added, "removed": report.removed, "unchanged": report.unchanged}
    return Outcome([manager.event(command, "reloaded", rejected=len(report.rejected), **fields)])


def _reject_or_relabel(manager: GalleryManager, command: GalleryCommand) -> Outcome:
    assert command.result is not None
    node, seq = command.result
    held = manager.probe(command.result)
    if held is None:
        return Outcome([manager.event(command, "not-held", result=f"{node}/{seq}")])
    vector, name = held
    base = GalleryCommand("enroll", command.id, command.actor, embeddings=vector[None, :], model=manager.model_id)
    forward: list[GalleryCommand] = []
    if name != UNKNOWN and name != command.person:
        forward.append(replace(base, op="negative", person=name, result=(node, seq)))
    if command.op == "relabel":
        forward.append(replace(base, person=command.person))
    if not forward:
        return Outcome([manager.event(command, "error", reason="nothing-to-reject", detail="the result was unknown")])
    return Outcome([manager.event(command, "forwarded", result=f"{node}/{seq}", was=name)], forward)


def _unknowns(manager: GalleryManager, command: GalleryCommand) -> Outcome:
    unknowns = manager.store.unknowns(manager.model_id, mine=True)  # a shared store holds every replica's
    recent: dict[int, list[str]] = {}  # newest members as NODE/SEQ, so a viewer can show their thumbnails
    for item in sorted(unknowns, key=lambda u: -u.ts):
        members = recent.setdefault(item.cluster, [])
        if len(members) < CLUSTER_MEMBERS_LISTED:
            members.append(f"{item.node}/{item.seq}")
    clusters = [
        {
            "cluster": f"{manager.instance}:{s.cluster}",
            "size": s.size,
            "first_seen": s.first_seen,
            "last_seen": s.last_seen,
            "nodes": s.nodes,
            "members": recent.get(s.cluster, []),
        }
        for s in summarise(unknowns)
    ]
    return Outcome([manager.event(command, "unknowns", clusters=clusters)])


def _name_cluster(manager: GalleryManager, command: GalleryCommand) -> Outcome:
    instance, _, number = command.cluster.rpartition(":")
    if instance != manager.instance or not number.isdigit():
        return Outcome([manager.event(command, "not-held", cluster=command.cluster)])
    members = manager.store.unknowns(manager.model_id, int(number))
    if not members:
        return Outcome([manager.event(command, "error", reason="no-such-cluster", cluster=command.cluster)])
    vectors = np.stack([m.vector for m in members])
    forward = GalleryCommand(
        "enroll", command.id, command.actor, command.person, embeddings=vectors, model=manager.model_id
    )
    manager.store.delete_unknowns([m.id for m in members])
    manager.clusters.remove(int(number))
    event = manager.event(command, "forwarded", cluster=command.cluster, size=len(members))
    return Outcome([event], [forward])


def _whereis(manager: GalleryManager, command: GalleryCommand) -> Outcome:
    found = manager.store.last_seen(command.person)
    fields = {"node": found[0], "seen_at": found[1]} if found else {"node": None, "seen_at": None}
    return Outcome([manager.event(command, "whereis", person=command.person, **fields)])


def _people(manager: GalleryManager, command: GalleryCommand) -> Outcome:
    roster = [
        {
            "person": entry.person,
            "photos": entry.photos,
            "enrolled": entry.enrolled,
            "last_seen": {"node": entry.seen_node, "at": entry.seen_at} if entry.seen_node else None,
        }
        for entry in manager.store.roster(manager.model_id)
    ]
    return Outcome([manager.event(command, "people", roster=roster)])


def _unknowns_like(manager: GalleryManager, person: str) -> int:
    """Delete kept unknown faces that match ``person`` (sightings from before they were enrolled)."""
    rows = [i for i, name in enumerate(manager.matcher.labels) if name == person]
    unknowns = manager.store.unknowns(manager.model_id)
    if not rows or not unknowns:
        return 0
    theirs = manager._vectors[rows]
    scores = np.stack([u.vector for u in unknowns]) @ theirs.T
    doomed = [u.id for u, best in zip(unknowns, scores.max(axis=1), strict=True) if best >= manager.threshold]
    if doomed:
        manager.store.delete_unknowns(doomed)
        manager.clusters.restore(manager.store.unknowns(manager.model_id))
    return len(doomed)


SYNC_CHUNK = 256


def _sync(manager: GalleryManager, command: GalleryCommand) -> Outcome:
    """A replica with a new store asked for the gallery: send every row (with its source id) to all replicas."""
    if command.requester == manager.instance:
        return Outcome([manager.event(command, "sync-requested")])
    base = GalleryCommand("enroll", command.id, f"replica:{manager.instance}", model=manager.model_id)
    forward: list[GalleryCommand] = []
    rows, negatives = manager.store.rows(manager.model_id), manager.store.negatives(manager.model_id)
    for op, table in (("enroll", rows), ("negative", negatives)):
        if table.vectors is None or not table.ids:
            continue
        for person in sorted(set(table.people)):
            mine = [i for i, name in enumerate(table.people) if name == person]
            for start in range(0, len(mine), SYNC_CHUNK):
                chunk = mine[start : start + SYNC_CHUNK]
                sources = tuple(table.sources[i] for i in chunk)
                vectors = table.vectors[chunk]
                forward.append(replace(base, op=op, person=person, embeddings=vectors, sources=sources))
    event = manager.event(command, "sync-sent", rows=len(rows.ids), negatives=len(negatives.ids))
    return Outcome([event], forward)
