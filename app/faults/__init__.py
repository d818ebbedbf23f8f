"""Fault endpoints for the stack's fault suite (tests/stack/test_faults.py) only.

config/urls.py routes them only when FAULT_ENDPOINTS=true, which only the fault tests set when
they recreate web; a deployment never does. Each one is a way a real view goes wrong: a slow
request in flight, a worker hung on a blocking call, a view that leaks memory.
"""
