"""What a preloaded Gunicorn master does last before it forks its workers (gunicorn.conf.py's
when_ready): build what every worker would otherwise build for itself on its first requests,
then move every object alive into the collector's permanent generation.

Each worker inherits the master's pages copy-on-write. A structure built lazily (the URL
resolver's reverse maps, django-ninja's OpenAPI document and the pydantic schemas it walks, the
template engines) is built again in each worker, on private pages. And the cyclic garbage
collector writes into the header of every object it examines, so a worker's first collections
copy the pages of objects it inherited and never changes. gc.freeze() takes them out of every
later collection (CPython documents this use before a fork).
"""

import gc
import logging

log = logging.getLogger("gunicorn.error")


def preload_warm() -> None:
    """Builds the lazily-built structures every worker uses."""
    from django.template import engines
    from django.template.backends.django import DjangoTemplates
    from django.urls import get_resolver

    from config.api import api

    get_resolver().reverse_dict  # noqa: B018 - its first access populates the resolver
    api.get_openapi_schema()
    for engine in engines.all():
        if isinstance(engine, DjangoTemplates):
            engine.engine.template_loaders  # noqa: B018 - instantiates the loaders, once


def preload_freeze() -> int:
    """Collects once, then freezes what is left; returns how many objects were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def preload_finish() -> None:
    preload_warm()
    frozen = preload_freeze()
    log.info("preload: structures built and %d objects frozen before the fork", frozen)
