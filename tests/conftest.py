"""Shared by every suite. Settings are loaded with APP_ENV=test; nothing here starts a service."""

import os

os.environ.setdefault("APP_ENV", "test")
# testcontainers' reaper image cannot be pulled without a registry; every fixture stops its own.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
