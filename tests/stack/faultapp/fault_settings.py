"""Django settings for the fault tests only: the product's settings plus /faults/.

The test image (Dockerfile target "faults", tests/stack/faults.compose.yml) puts
tests/stack/faultapp/ on the path and names this module in DJANGO_SETTINGS_MODULE; the runtime
image carries neither, so a deployment cannot route /faults/.
"""

from django.core.exceptions import ImproperlyConfigured

from config.settings import *  # noqa: F403
from config.settings import PRODUCTION

if PRODUCTION:
    # A lab image deployed by mistake must not serve views that hang, block and leak.
    raise ImproperlyConfigured(
        "fault_settings is for the tests and the bench only: never with APP_ENV=production"
    )

ROOT_URLCONF = "fault_urls"
