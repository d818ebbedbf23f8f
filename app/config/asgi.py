import os

from config import tracing
from runtime.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_asgi_application()
if tracing.enabled():
    application = tracing.wrap_asgi(application)
