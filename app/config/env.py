"""Typed readers for environment variables: the only way settings get outside input."""

import os

from django.core.exceptions import ImproperlyConfigured

# Values that exist only so `docker compose up` works on a fresh clone. Production refuses them.
DEV_PREFIX = "dev-only-"


def env_str(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise ImproperlyConfigured(f"environment variable {name} is required")
    return value


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from exc


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from exc


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean, got {raw!r}")


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_secret(name: str, *, production: bool, dev_default: str) -> str:
    """A secret: in production it must be set and must not be a development placeholder."""
    value = os.environ.get(name, "" if production else dev_default)
    if production and (not value or value.startswith(DEV_PREFIX)):
        raise ImproperlyConfigured(
            f"{name} is missing or still has its development value; set a real secret"
        )
    return value
