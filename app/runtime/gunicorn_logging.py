"""Gunicorn's error log as JSON lines on stdout, in the same shape as every other log line.

app/gunicorn.conf.py names this class as `logger_class`. Uvicorn workers copy the handlers of
`gunicorn.error` onto `uvicorn.error`, so Uvicorn's lines come out as JSON too.
"""

import logging
import sys
from typing import Any

from gunicorn.glogging import Logger

from core.logging import JsonFormatter


class JsonLogger(Logger):  # type: ignore[misc]  # gunicorn ships no types
    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        formatter = JsonFormatter()
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(formatter)
                # errorlog "-" is stderr to Gunicorn; every JSON line of the stack goes to stdout.
                if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr:
                    handler.setStream(sys.stdout)
