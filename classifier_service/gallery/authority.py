"""Who sent a gallery command: the broker account its topic names, never a name in the payload.

broker/acl lets an account publish only on ``<prefix>/gallery/cmd/<its own name>``
and grants that topic only to the admin role, the REST API's ``api`` account and
the classifier replicas.
Replicas forward the replica-to-replica ops (``sync``, and the ``enroll`` /
``negative`` with embeddings that a reject, relabel or name-cluster turns into)
on their own account's topic; from that account no other op is applied, and
the audit records the original actor "via" the replica account.
"""

from __future__ import annotations

from facewire.schema.gallery import GalleryCommand
from facewire.topics import Topics

REPLICA_OPS = frozenset({"sync", "enroll", "negative"})
ANONYMOUS_REPLICA = "classifier"  # the replicas' topic level on a broker without logins


def command_actor(topics: Topics, topic: str, command: GalleryCommand, replica_account: str) -> str | None:
    """The actor to audit for ``command`` received on ``topic``; None if that account may not send it."""
    account = topics.command_account(topic)
    if account is None:
        return None
    if account != replica_account:
        return account
    if command.op not in REPLICA_OPS or command.images:
        return None
    return f"{command.actor} via {account}"
