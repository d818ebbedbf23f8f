"""Django settings for `make bench` only: the product's settings plus the bench's URLs and app.

The bench image (Dockerfile target "bench") puts bench/django/ on the path and names this
module in DJANGO_SETTINGS_MODULE; the runtime image carries neither, so a deployment cannot
route /bench/.
"""

from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool
from config.settings import *  # noqa: F403
from config.settings import INSTALLED_APPS, PRODUCTION

if PRODUCTION:
    # A lab image deployed by mistake must not serve endpoints that burn CPU and load upstreams.
    raise ImproperlyConfigured(
        "bench_settings is for the tests and the bench only: never with APP_ENV=production"
    )

ROOT_URLCONF = "bench_urls"
INSTALLED_APPS = [*INSTALLED_APPS, "bench_endpoints"]

# The observability scenario's "off" row (bench/run.py): false records no metrics, to measure
# what recording costs (bench_endpoints.apps).
METRICS_ENABLED = env_bool("METRICS_ENABLED", True)
