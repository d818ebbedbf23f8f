"""Shared by every suite. Settings are loaded with APP_ENV=test; nothing here starts a service."""

import os
import re  # demo-shop
from functools import cache  # demo-shop
from pathlib import Path  # demo-shop

import pytest  # demo-shop

os.environ.setdefault("APP_ENV", "test")
# testcontainers' reaper image cannot be pulled without a registry; every fixture stops its own.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
# The unit tests reach Postgres directly, with no PgBouncer to hold the health checks' databases
# (settings.DATABASE_CHECK_SUFFIX): for the Django processes they start (pytest's own settings
# are loaded before this runs: tests/app/conftest.py); compose sets the stack's value.
os.environ.setdefault("DB_CHECK_SUFFIX", "")

# demo-shop: begin
# The demo shop's tests (README "Make it yours"): they go with app/shop. A module that imports
# the shop cannot even be collected without it, so it is marked whole.
DEMO_SHOP_PATHS = ("tests/app/shop/", "tests/app/reports/", "tests/stack/test_shop.py")
IMPORTS_SHOP = re.compile(r"^\s*(from|import) (shop|reports|tests\.app\.shop)\b", re.MULTILINE)
ROOT = Path(__file__).resolve().parent.parent


@cache
def _is_demo_shop(path: Path) -> bool:
    relative = path.relative_to(ROOT).as_posix()
    return relative.startswith(DEMO_SHOP_PATHS) or bool(IMPORTS_SHOP.search(path.read_text()))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _is_demo_shop(item.path):
            item.add_marker(pytest.mark.demo_shop)


# demo-shop: end
