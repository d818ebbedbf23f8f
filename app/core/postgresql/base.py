"""Django's PostgreSQL backend, with no write committing past its request's deadline
(core/write_deadline.py says why). settings.DATABASES names this package as the ENGINE."""

from typing import Any

from django.db.backends.postgresql import base

from core import write_deadline


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.execute_wrappers.append(write_deadline.autocommit_guard)

    def _commit(self) -> None:
        with write_deadline.committing():
            super()._commit()  # type: ignore[misc]  # not in django-stubs
