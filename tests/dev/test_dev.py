"""`make dev`'s development mode (docker-compose.dev.yml), as a forker uses it: in a copy of the
project, an edited view answers the next requests and an edited Celery task runs in the worker,
with no rebuild; makemigrations and startapp in the container write files the developer owns;
DEBUG with the Debug Toolbar; Postgres, Redis and the mail catcher's page on 127.0.0.1.

The copy is its own compose project on free ports, only the services the checks need, removed
with its volumes at the end. Run by root (as in CI here), the copy is handed to UID 1000 and the
containers run as that user: a developer whose UID is neither root nor the image's 10001.
"""

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis
import requests

from tests.support import ROOT, run, wait_until

pytestmark = pytest.mark.stack

DEV_FILES = ("-f", "docker-compose.yml", "-f", "docker-compose.dev.yml")
SERVICES = ("web", "worker", "nginx", "mailcatcher")
# Passed from this shell to compose; nothing else (a developer's COMPOSE_* must not leak in).
PASSED = {"PATH", "HOME", "DOCKER_HOST", "IMAGE_TAG", "IMAGE_REGISTRY", "BASE_IMAGE"}
PASSED |= {"BUILD_CA_BUNDLE"}
ADD_RESULT = """
from ops.tasks import add
print(add.delay(1, 2).get(timeout=20))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Dev:
    root: Path
    env: dict[str, str]
    uid: int

    def port(self, name: str) -> int:
        return int(self.env[name])

    def compose(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return run(
            "docker", "compose", *DEV_FILES, *args,
            check=check, timeout=timeout, cwd=self.root, env=self.env,
        )  # fmt: skip

    def manage(self, *args: str) -> str:
        return self.compose("exec", "-T", "web", "python3", "manage.py", *args).stdout

    def edit(self, path: str, old: str, new: str) -> None:
        file = self.root / path
        text = file.read_text()
        assert old in text, f"{path} no longer has {old!r}"
        file.write_text(text.replace(old, new, 1))

    def container_ids(self) -> list[str]:
        return sorted(self.compose("ps", "--all", "--quiet", *SERVICES).stdout.split())


def copy_project(target: Path) -> None:
    """The repository's files as a fork has them: tracked, plus new ones not ignored."""
    listed = run(
        "git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", cwd=ROOT
    ).stdout
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


@pytest.fixture(scope="module")
def dev(tmp_path_factory) -> Iterator[Dev]:
    root = tmp_path_factory.mktemp("fork")
    copy_project(root)
    uid = os.getuid()
    if uid == 0:
        uid = 1000
        run("chown", "-R", f"{uid}:{uid}", str(root))
    env = {k: v for k, v in os.environ.items() if k in PASSED}
    env |= {
        "COMPOSE_PROJECT_NAME": os.environ.get("STACK_PROJECT", "djstack-test") + "-dev",
        "DEV_UID": str(uid),
        "DEV_GID": str(uid),
        "NGINX_PORT": str(free_port()),
        "DEV_WEB_PORT": str(free_port()),
        "DEV_POSTGRES_PORT": str(free_port()),
        "DEV_REDIS_PORT": str(free_port()),
        "DEV_MAILCATCHER_PORT": str(free_port()),
    }
    d = Dev(root, env, uid)
    try:
        up = d.compose(
            "up", "--detach", "--build", "--wait", "--wait-timeout", "240", *SERVICES,
            check=False, timeout=600,
        )  # fmt: skip
        if up.returncode != 0:
            logs = d.compose("logs", "--no-color", "--tail", "40", check=False).stdout
            raise AssertionError(f"dev mode did not start:\n{up.stderr}\n--- logs ---\n{logs}")
        yield d
    finally:
        d.compose("down", "--volumes", "--remove-orphans", "--timeout", "10", check=False)


def test_an_edited_view_answers_without_a_rebuild(dev):
    before = dev.container_ids()
    nginx = f"http://127.0.0.1:{dev.port('NGINX_PORT')}/dev-edit/"
    # Django loads the URLconf at a worker's first request: this one makes dev mode's single web
    # worker hold the unedited one, which only a restart replaces.
    assert requests.get(nginx, timeout=10).status_code == 404
    token = uuid.uuid4().hex
    dev.edit(
        "app/config/urls.py",
        "handler400 =",
        "from django.http import JsonResponse\n\n"
        f'urlpatterns.append(path("dev-edit/", lambda request: JsonResponse({{"v": "{token}"}})))\n'
        "handler400 =",
    )
    answer = wait_until(
        lambda: (r := requests.get(nginx, timeout=5)).status_code == 200 and r.json(),
        timeout=120,
        interval=1,
        what="the new view through Nginx",
    )
    assert answer == {"v": token}
    # Same containers: the code reached them through the bind mount, not a rebuild or recreate.
    assert dev.container_ids() == before


def test_an_edited_task_runs_in_the_worker(dev):
    run_add = ("exec", "-T", "web", "python3", "manage.py", "shell", "-v", "0", "-c", ADD_RESULT)
    assert dev.compose(*run_add, timeout=60).stdout.split() == ["3"]
    dev.edit("app/ops/tasks.py", "return a + b\n", "return a + b + 1000\n")

    def new_result() -> bool:
        # Sent again until the restarted worker takes it: one sent just before the restart may
        # still be run by the old code.
        return dev.compose(*run_add, check=False, timeout=60).stdout.split() == ["1003"]

    wait_until(new_result, timeout=120, interval=2, what="the worker running the edited task")


def test_makemigrations_and_startapp_write_files_the_developer_owns(dev):
    dev.manage("makemigrations", "notifications", "--empty", "--name", "dev_mode_probe")
    (migration,) = (dev.root / "app/notifications/migrations").glob("*_dev_mode_probe.py")
    assert migration.stat().st_uid == dev.uid
    dev.manage("startapp", "blog")
    models = dev.root / "app/blog/models.py"
    assert models.stat().st_uid == dev.uid
    assert (dev.root / "app/blog").stat().st_uid == dev.uid


def test_debug_with_the_toolbar_on_the_published_web(dev):
    web = f"http://127.0.0.1:{dev.port('DEV_WEB_PORT')}"

    def pages() -> tuple[requests.Response, ...] | None:
        # Together: web may still be restarting after the files the tests before wrote.
        answers = tuple(
            requests.get(f"{web}{path}", timeout=10)
            for path in (
                "/admin/login/",
                # The toolbar's own files, served by Django from the package (Nginx has none).
                "/static/debug_toolbar/js/toolbar.js",
                "/no-such-page/",
            )
        )
        return answers if [a.status_code for a in answers] == [200, 200, 404] else None

    page, script, missing = wait_until(
        pages, timeout=120, interval=1, what="the admin, the toolbar's script and a 404 on web"
    )
    assert 'id="djDebug"' in page.text
    assert "javascript" in script.headers["Content-Type"]
    # Never through Nginx: neither on its pages nor its views (they list anyone's requests).
    nginx = f"http://127.0.0.1:{dev.port('NGINX_PORT')}"
    assert 'id="djDebug"' not in requests.get(f"{nginx}/admin/login/", timeout=10).text
    request_id = page.text.split('data-request-id="', 1)[1].split('"', 1)[0]
    history = f"/__debug__/history_refresh/?request_id={request_id}"
    assert requests.get(f"{nginx}{history}", timeout=10).status_code == 404
    assert requests.get(f"{web}{history}", timeout=10).status_code == 200
    # DEBUG's technical 404 page, not the API's JSON error.
    assert "Using the URLconf defined in" in missing.text


def test_postgres_redis_and_the_mail_page_are_published_on_loopback(dev):
    with psycopg.connect(
        host="127.0.0.1", port=dev.port("DEV_POSTGRES_PORT"), dbname="app", user="app",
        password="dev-only-app", connect_timeout=10,
    ) as connection:  # fmt: skip
        row = connection.execute("select count(*) from django_migrations").fetchone()
        assert row is not None
        assert row[0] > 0
    client = redis.Redis(
        host="127.0.0.1", port=dev.port("DEV_REDIS_PORT"), password="dev-only-redis",
        socket_timeout=5,
    )  # fmt: skip
    assert client.ping()
    client.close()
    dev.manage("sendtestemail", "dev-mode@example.com")
    page = requests.get(f"http://127.0.0.1:{dev.port('DEV_MAILCATCHER_PORT')}/", timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "Test email from" in page.text
    assert "dev-mode@example.com" in page.text
    # The JSON API the stack tests read is still there.
    messages = requests.get(
        f"http://127.0.0.1:{dev.port('DEV_MAILCATCHER_PORT')}/messages", timeout=10
    ).json()
    assert [m["rcpt_tos"] for m in messages] == [["dev-mode@example.com"]]
