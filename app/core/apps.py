from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Platform: health, errors, logging, task plumbing"

    def ready(self) -> None:
        # A read in flight on a replica that stops answering is cut (core.db's watchdog).
        from core.db import database_queries_track

        database_queries_track()
