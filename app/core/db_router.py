"""Writes and migrations go to the primary; reads go to the streaming replicas, except for the
few apps whose reads must never be stale (logins, sessions, tokens), which stay on the primary.
Selectors that need read-your-writes or replica fallback choose the alias explicitly (core.db).
"""

import random
from typing import Any

from django.conf import settings
from django.db.models import Model

PRIMARY = "default"
REPLICA = "replica"


def replica_aliases() -> tuple[str, ...]:
    """Every replica's alias, REPLICA first (settings.DATABASE_REPLICAS, from DB_REPLICA_NAMES)."""
    replicas: tuple[str, ...] = settings.DATABASE_REPLICAS
    return replicas


def replica_spread(aliases: tuple[str, ...]) -> str:
    """One of the replicas, at random: each read picks anew, so reads share the replicas evenly
    without any state to keep."""
    return aliases[0] if len(aliases) == 1 else random.choice(aliases)  # noqa: S311 (no secret)


# A session or password written a moment ago must be readable at once, lag or not; these
# tables are small and their reads cheap.
PRIMARY_ONLY_APPS = frozenset({"auth", "sessions", "accounts", "admin", "contenttypes"})


class PrimaryReplicaRouter:
    def db_for_read(self, model: type[Model], **hints: Any) -> str:
        if model._meta.app_label in PRIMARY_ONLY_APPS:
            return PRIMARY
        # A related read of an object that came from the primary (order.items, item.product
        # right after a write) stays there: the replica may not have those rows yet, or be down.
        # One from a replica stays on that replica: another may lag behind it.
        instance = hints.get("instance")
        replicas = replica_aliases()
        if instance is not None and instance._state.db in (PRIMARY, *replicas):
            db: str = instance._state.db
            return db
        # No down mark here: reads that must survive a replica outage go through core.db.read.
        return replica_spread(replicas)

    def db_for_write(self, model: type[Model], **hints: Any) -> str:
        return PRIMARY

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool:
        # Both aliases hold the same data: relations across them are the same rows.
        return True

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return db == PRIMARY
