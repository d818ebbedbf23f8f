import os
from typing import Any

from core import tracing
from runtime import config as runtime_config
from runtime.lifespan import Lifespan

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def _served(handler: Any) -> Any:
    """Django's handler behind the edge cache (runtime/edge.py), with each domain's cached GETs:
    inside the trace, so that their spans are kept too."""
    from django.conf import settings

    from runtime.edge import Edge
    from shop.cache import EDGE_ROUTES  # demo-shop

    routes = EDGE_ROUTES  # demo-shop
    # demo-shop: else routes = ()
    return Edge(handler, routes) if settings.EDGE_CACHE and routes else handler


handler: Any
if runtime_config.POOLED:
    from runtime.asgi import get_asgi_application

    handler = get_asgi_application()
else:
    # SERVER_RUNTIME=stock: Django's own handler, as released (runtime/config.py).
    from django.core.asgi import get_asgi_application as get_stock_asgi_application

    handler = get_stock_asgi_application()
# Untraced: a preloading master's warm-up request goes through this (config/preload.py).
served: Any = _served(handler)
application: Any = tracing.wrap_asgi(served) if tracing.enabled() else served
# Outermost: a stopping worker closes what it holds, whichever handler (runtime/lifespan.py).
application = Lifespan(application, handler=handler)
