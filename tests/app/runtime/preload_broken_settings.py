"""The project's settings plus a cache alias whose backend cannot be imported, which nothing
uses: a preloading master's warm-up meets it before any worker would."""

from config.settings import *  # noqa: F403
from config.settings import CACHES

CACHES = {**CACHES, "unused": {"BACKEND": "tests.app.runtime.no_such_module.Cache"}}
