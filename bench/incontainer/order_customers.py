"""Scenario 15, inside web: the customers who place the orders, each with a password (they log
in through Nginx) and an address (the confirmation email needs one). Arguments: the username
prefix, the count, the password. Prints one JSON line: the usernames."""

import json
import os
import sys

import django

sys.path.insert(0, "/app")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()
from django.contrib.auth import get_user_model  # noqa: E402

from accounts.services import customer_create  # noqa: E402
from core.db_router import PRIMARY  # noqa: E402

PREFIX, COUNT, PASSWORD = sys.argv[1], int(sys.argv[2]), sys.argv[3]
names = [f"{PREFIX}{i}" for i in range(COUNT)]
for name in names:
    user = get_user_model().objects.using(PRIMARY).filter(username=name).first()
    if user is None:
        customer_create(username=name, password=PASSWORD, email=f"{name}@example.com")
    else:  # a rerun on the same stack: this run's password
        user.set_password(PASSWORD)
        user.save(update_fields=["password"])
print(json.dumps(names))
