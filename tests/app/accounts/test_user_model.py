"""The project's own user model, from accounts' first migration (Django's advice for new
projects: swapping the model under existing tables later is a hand-written data migration)."""

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.operations import CreateModel

from tests.app.accounts.factories import UserFactory


def test_the_user_model_is_accounts_user() -> None:
    from accounts.models import User

    assert settings.AUTH_USER_MODEL == "accounts.User"
    assert get_user_model() is User
    assert User._meta.db_table == "accounts_user"


def test_accounts_first_migration_creates_the_user_model() -> None:
    first = MigrationLoader(None, ignore_no_migrations=True).get_migration(
        "accounts", "0001_initial"
    )
    created = [op.name for op in first.operations if isinstance(op, CreateModel)]
    assert created[0] == "User"


@pytest.mark.django_db
def test_users_live_in_the_accounts_user_table() -> None:
    user = UserFactory(username="ada")
    with connection.cursor() as cursor:
        cursor.execute("SELECT username FROM accounts_user WHERE id = %s", [user.pk])
        assert cursor.fetchone() == ("ada",)
