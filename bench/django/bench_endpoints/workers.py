"""`make bench` only: the default worker with Uvicorn's own HTTP protocol, which writes a
response's head and its body in two system calls (runtime/http_protocol.py joins them), so
scenario 1 measures what the one write saves, side by side in the same run."""

from runtime.workers import UvicornWorker


class TwoWritesUvicornWorker(UvicornWorker):
    CONFIG_KWARGS = {**UvicornWorker.CONFIG_KWARGS, "http": "httptools"}
