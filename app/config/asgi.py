import os
from typing import Any

from core import tracing
from runtime import config as runtime_config

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application: Any
if runtime_config.POOLED:
    from runtime.asgi import get_asgi_application

    application = get_asgi_application()
else:
    # SERVER_RUNTIME=stock: Django's own handler, as released (runtime/config.py).
    from django.core.asgi import get_asgi_application as get_stock_asgi_application

    application = get_stock_asgi_application()
if tracing.enabled():
    application = tracing.wrap_asgi(application)
