"""Django settings for `make bench` only: the product's settings plus the bench's URLs.

The bench image (Dockerfile target "bench") puts bench/django/ on the path and names this
module in DJANGO_SETTINGS_MODULE; the runtime image carries neither, so a deployment cannot
route /bench/.
"""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench_urls"
