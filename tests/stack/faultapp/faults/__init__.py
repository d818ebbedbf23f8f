"""Fault endpoints for the fault tests (tests/stack/test_faults.py, tests/stack/test_monitoring.py,
tests/app/core/test_workers.py) only.

fault_urls routes them, and only fault_settings names it: in the test image (Dockerfile target
"faults") and the test suite's own Gunicorn, never in the runtime image. Each one is a way a real
view goes wrong: a slow request in flight, a worker hung on a blocking call, a view that leaks
memory.
"""
