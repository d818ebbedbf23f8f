"""Worker liveness without the broker: the heartbeat file must be fresher than MAX_AGE.

The worker touches the file from its own timer (config/celery.py), so a stuck event loop
or a dead process shows here, while a slow or absent broker does not restart the worker.
"""

import os
import sys
import time

path = os.environ.get("CELERY_HEARTBEAT_FILE", "/tmp/celery-heartbeat")  # noqa: S108
# Three missed beats of the default 5 s interval.
max_age = float(os.environ.get("CELERY_HEARTBEAT_MAX_AGE", "15"))
try:
    age = time.time() - os.stat(path).st_mtime
except FileNotFoundError:
    sys.exit(f"no heartbeat file at {path}")
if age > max_age:
    sys.exit(f"heartbeat is {age:.0f}s old (limit {max_age:.0f}s)")
