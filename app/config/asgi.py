import os
from typing import Any

from core import tracing
from runtime import config as runtime_config
from runtime.lifespan import Lifespan

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
handler: Any
if runtime_config.POOLED:
    from runtime.asgi import get_asgi_application

    handler = get_asgi_application()
else:
    # SERVER_RUNTIME=stock: Django's own handler, as released (runtime/config.py).
    from django.core.asgi import get_asgi_application as get_stock_asgi_application

    handler = get_stock_asgi_application()
application: Any = tracing.wrap_asgi(handler) if tracing.enabled() else handler
# Outermost: a stopping worker closes what it holds, whichever handler (runtime/lifespan.py).
application = Lifespan(application, handler=handler)
