# Importing the Celery app here makes @shared_task bind to it in web and worker alike.
from config.celery import app as celery_app

__all__ = ["celery_app"]
