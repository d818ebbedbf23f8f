import os

from django.core.wsgi import get_wsgi_application

from core import tracing
from core.write_deadline import WSGIDeadline
from runtime import config as runtime_config

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# No write commits past Gunicorn's timeout (core/write_deadline.py): under gthread nothing else
# stops a request that Nginx has answered 504.
application = WSGIDeadline(get_wsgi_application(), seconds=runtime_config.TIMEOUT)
if tracing.enabled():
    application = tracing.wrap_wsgi(application)
