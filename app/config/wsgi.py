import os

from django.core.wsgi import get_wsgi_application

from core import tracing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()
if tracing.enabled():
    application = tracing.wrap_wsgi(application)
