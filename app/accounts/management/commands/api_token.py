from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.services import api_token_create, customer_create
from core.db_router import PRIMARY


class Command(BaseCommand):
    help = "Print a new API token for a user, creating the user first with --create."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--create", action="store_true", help="create the user if missing")
        parser.add_argument("--staff", action="store_true", help="with --create: a staff user")
        parser.add_argument("--password", default=None, help="with --create; default: unusable")

    def handle(self, *args: Any, **options: Any) -> None:
        users = get_user_model().objects.using(PRIMARY)
        user = users.filter(username=options["username"]).first()
        if user is None:
            if not options["create"]:
                raise CommandError(f"no user {options['username']!r}; pass --create")
            user = customer_create(
                username=options["username"],
                password=options["password"] or "",
                staff=options["staff"],
            )
            if not options["password"]:
                user.set_unusable_password()
                user.save(update_fields=["password"])
        token, _ = api_token_create(user=user)
        self.stdout.write(token)
