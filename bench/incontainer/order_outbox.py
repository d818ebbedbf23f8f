"""Scenario 15, inside web: what became of the confirmation emails of the orders placed, the
outbox rows by state and the messages the mail catcher received for those customers.
Arguments: the username prefix. Prints one JSON line."""

import json
import os
import sys
import urllib.request

import django

sys.path.insert(0, "/app")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()
from django.db.models import Count  # noqa: E402

from core.db_router import PRIMARY  # noqa: E402
from notifications.models import OutboxEmail  # noqa: E402

PREFIX = sys.argv[1]
rows = (
    OutboxEmail.objects.using(PRIMARY)
    .filter(recipient__startswith=PREFIX, key__startswith="order-confirmation:")
    .values("state")
    .annotate(n=Count("id"))
)
with urllib.request.urlopen("http://mailcatcher:8025/messages", timeout=10) as response:
    messages = json.loads(response.read())
delivered = sum(any(to.startswith(PREFIX) for to in m["rcpt_tos"]) for m in messages)
print(json.dumps({"outbox": {r["state"]: r["n"] for r in rows}, "delivered": delivered}))
