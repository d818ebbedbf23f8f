"""A real Gunicorn master that preloads the app holding a Postgres connection, two Uvicorn
workers forked from it: no worker keeps the master's connection (gunicorn.conf.py's post_fork),
or two processes would talk to Postgres over one socket."""

import os
from pathlib import Path

from testcontainers.core.container import DockerContainer

from tests.app.conftest import DB_PASSWORD
from tests.app.runtime.gunicorn_process import gunicorn
from tests.support import ROOT, wait_until


def sockets(pid: int) -> set[str]:
    """The process's open sockets, as their /proc links (socket:[inode])."""
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            found.add(target)
    return found


def children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def test_no_worker_shares_the_database_connection_the_master_opened_while_preloading(
    tmp_path, postgres_container: DockerContainer
) -> None:
    socket_file = tmp_path / "preload-socket"
    with gunicorn(
        tmp_path,
        "tests.app.runtime.preload_connection:application",
        PYTHONPATH=f"{ROOT / 'app'}:{ROOT}",
        PRELOAD_SOCKET_FILE=str(socket_file),
        GUNICORN_WORKERS="2",
        GUNICORN_PRELOAD="true",
        DB_HOST=postgres_container.get_container_host_ip(),
        DB_PORT=str(postgres_container.get_exposed_port(5432)),
        DB_PASSWORD=DB_PASSWORD,
    ) as server:
        master = server.process.pid
        wait_until(lambda: len(children(master)) == 2, timeout=30, what="two workers")
        opened = socket_file.read_text()
        assert opened in sockets(master), "the master holds the connection it preloaded"
        for worker in children(master):
            assert opened not in sockets(worker), f"worker {worker} shares the master's connection"
