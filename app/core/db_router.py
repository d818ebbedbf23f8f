"""Writes and migrations go to the primary; reads go to a serving streaming replica, except for the
few apps whose reads must never be stale (logins, sessions, tokens), which stay on the primary.
Selectors that need read-your-writes or replica fallback choose the alias explicitly (core.db).
"""

from typing import Any

from django.conf import settings
from django.db.models import Model

PRIMARY = "default"
# The first replica's alias; the others are replica2, replica3, ... (settings.DB_REPLICA_NAMES).
REPLICA = "replica"


def replica_aliases() -> list[str]:
    return [alias for alias in settings.DATABASES if alias.startswith(REPLICA)]


# A session or password written a moment ago must be readable at once, lag or not; these
# tables are small and their reads cheap.
PRIMARY_ONLY_APPS = frozenset({"auth", "sessions", "accounts", "admin", "contenttypes"})


class PrimaryReplicaRouter:
    def db_for_read(self, model: type[Model], **hints: Any) -> str:
        if model._meta.app_label in PRIMARY_ONLY_APPS:
            return PRIMARY
        # A related read of an object that came from the primary (order.items, item.product
        # right after a write) stays there: the replica may not have those rows yet, or be down.
        instance = hints.get("instance")
        if instance is not None and instance._state.db == PRIMARY:
            return PRIMARY
        # Only a replica this process found serving (core.db), else the primary.
        from core.db import replica_for_read

        return replica_for_read()

    def db_for_write(self, model: type[Model], **hints: Any) -> str:
        return PRIMARY

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool:
        # Both aliases hold the same data: relations across them are the same rows.
        return True

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return db == PRIMARY
