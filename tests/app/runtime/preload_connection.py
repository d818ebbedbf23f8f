"""The ASGI app for Gunicorn with a database connection opened while the master preloads it:
the state gunicorn.conf.py's post_fork must not let a worker inherit. The connection's socket
(its /proc link, socket:[inode]) is written to PRELOAD_SOCKET_FILE for the test to look for."""

import os
from pathlib import Path

from django.db import connection

from config.asgi import application

connection.ensure_connection()
_fd = connection.connection.pgconn.socket
Path(os.environ["PRELOAD_SOCKET_FILE"]).write_text(os.readlink(f"/proc/self/fd/{_fd}"))

__all__ = ["application"]
