"""Django settings for the fault tests only: the product's settings plus /faults/.

The test image (Dockerfile target "faults", tests/stack/compose.faults.yml) puts
tests/stack/faultapp/ on the path and names this module in DJANGO_SETTINGS_MODULE; the runtime
image carries neither, so a deployment cannot route /faults/.
"""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "fault_urls"
