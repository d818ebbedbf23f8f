"""Every variable `.env.example` documents reaches every process that reads it.

`.env.example` is the one list of settings; copied to `.env`, compose must hand each variable to
each container whose process reads it. Readers are found by searching the code each service
runs (below, READERS) for the name; only the exceptions are listed by hand. The check renders
`docker compose config` with a temporary env file that gives every variable a distinctive value,
so nothing but compose's own interpolation is exercised: no image, no container.
"""

import json
import os
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest

from tests.support import ROOT

CELERY_WORKERS = (
    "worker",
    "worker-reports",  # demo-shop
    "worker-email",
)
DJANGO = ("web", "migrate", *CELERY_WORKERS, "beat", "flower")

# Host-only: read by compose itself (ports, images, builds) or the Makefile, never by a process
# in a container. Each must at least be used by a compose file.
HOST_ONLY = {
    "NGINX_BIND",
    "NGINX_PORT",
    "NGINX_TLS_PORT",
    "NGINX_TLS_DIR",
    "PROMETHEUS_PORT",
    "ALERTMANAGER_PORT",
    "FLOWER_PORT",
    # Development mode's ports and user (docker-compose.dev.yml).
    "DEV_WEB_PORT",
    "DEV_POSTGRES_PORT",
    "DEV_REDIS_PORT",
    "DEV_MAILCATCHER_PORT",
    "DEV_UID",
    "DEV_GID",
    "IMAGE_REGISTRY",
    "IMAGE_TAG",
    "BASE_IMAGE",
    "BUILD_CA_BUNDLE",
    # The cache instance's memory: compose passes it as an argument (redis-cache's command).
    "REDIS_CACHE_MAXMEMORY",
    # Compose itself: every container's log rotation (x-hardened; tests/test_compose.py).
    "LOG_MAX_SIZE",
    "LOG_MAX_FILES",
}

# Wired by docker-compose.yml to its own topology (service names, ports, mount paths) or set per
# service (a role, a queue): a value in .env must not move them, or one service would point
# somewhere the others do not. Each must still be set for every service that reads it, and
# .env.example says so beside it (a value there is for Kubernetes or another runner).
WIRED = {
    "DB_HOST",
    "DB_PORT",
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_CACHE_HOST",
    "REDIS_CACHE_PORT",
    "PRIMARY_HOST",
    "REPLICA_HOSTS",
    "REPLICA_SLOT",
    "PG_ROLE",
    "CELERY_QUEUES",
    "CELERY_WORKER_NAME",
    "MEDIA_ROOT",
    "PG_EXPORTER_HOST",
    "PGBOUNCER_HOST",
    "PGBOUNCER_PORT",
    "REDIS_ADDR",
    "NGINX_STATUS_URI",
    "NGINX_UPSTREAM_HOST",
}

# Read by a library from the environment, so no search of this repository finds the reader.
LIBRARY_READERS = {
    # Flower's own FLOWER_* options.
    "FLOWER_PURGE_OFFLINE_WORKERS": ("flower",),
}

# The same image's code run for another instance: these services get that instance's value under
# the name the code reads (a variable of .env.example, or a fixed value: None).
OTHER_INSTANCE: dict[str, dict[str, str | None]] = {
    "redis-cache": {"REDIS_PASSWORD": "REDIS_CACHE_PASSWORD"},
    "redis-cache-exporter": {
        "REDIS_PASSWORD": "REDIS_CACHE_PASSWORD",
        "REDIS_EXPORTER_QUEUE_KEYS": None,  # no Celery queues in the cache
    },
}

# Read by the Django code (app/runtime/config.py), but used by Gunicorn's master alone.
ONLY = {"GUNICORN_METRICS_DIR": ("web",)}


def documented() -> dict[str, str]:
    names = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = re.match(r"([A-Z][A-Z0-9_]*)=(.*)", line)
        if match:
            names[match.group(1)] = match.group(2)
    return names


def _code(path: Path) -> str:
    """A file without its comment lines: a name mentioned in a comment is not read."""
    return "\n".join(
        line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")
    )


def _shell_roles(path: Path) -> dict[str, str]:
    """Each role of a `case "$role" in` entrypoint: the branch, plus the functions it calls and
    the config templates (in the same folder) those render, plus the shared preamble."""
    text = _code(path)
    head, _, body = text.partition('case "$role" in')
    functions = dict(re.findall(r"^(\w+)\(\) \{\n(.*?)^\}", head, re.S | re.M))
    preamble = re.sub(r"^(\w+)\(\) \{\n.*?^\}", "", head, flags=re.S | re.M)
    roles = {}
    for role, branch in re.findall(r"^  ([\w-]+)\)\n(.*?)^    ;;", body, re.S | re.M):
        parts = [preamble, branch]
        for name, function in functions.items():
            if re.search(rf"\b{name}\b", branch):
                parts.append(function)
                for template in re.findall(r"\$SRC/([\w.]+\.yml)", function):
                    parts.append(_code(path.parent / template))
        roles[role] = "\n".join(parts)
    return roles


def _files(*patterns: str) -> str:
    return "\n".join(_code(p) for pattern in patterns for p in sorted(ROOT.glob(pattern)))


def _python(*paths: Path) -> str:
    """The string literals of Python files: os.environ and config.env take names as literals,
    while docstrings and comments that mention a name only read as prose."""
    return "\n".join(
        literal
        for path in paths
        for literal in re.findall(r"[\"']([A-Z][A-Z0-9_]*)[\"']", path.read_text())
    )


# Gunicorn's configuration and the one module that reads its variables: web alone runs them.
GUNICORN = ("app/gunicorn.conf.py", "app/runtime/config.py")


def _django() -> str:
    app = ROOT / "app"
    gunicorn = {ROOT / path for path in GUNICORN}
    return _python(*(p for p in sorted(app.rglob("*.py")) if p not in gunicorn))


def readers(services: dict[str, dict[str, object]]) -> list[tuple[str, str, tuple[str, ...]]]:
    """(what, the code, the services running it)."""
    celery = _shell_roles(ROOT / "celery/entrypoint.sh")
    monitoring = _shell_roles(ROOT / "monitoring/entrypoint.sh")
    by_role: dict[str, list[str]] = {}
    for name, service in services.items():
        command = service.get("command") or []
        if "/monitoring:" in str(service.get("image")) and isinstance(command, list):
            by_role.setdefault(command[0], []).append(name)
    table = [
        # demo-shop: begin
        ("upstream/", _python(*sorted(ROOT.glob("upstream/*.py"))), ("price", "recommendations")),
        # demo-shop: end
        ("app/ (Django)", _django(), DJANGO),
        (" and ".join(GUNICORN), _python(*(ROOT / path for path in GUNICORN)), ("web",)),
        ("celery/entrypoint.sh worker", celery["worker"], CELERY_WORKERS),
        ("celery/entrypoint.sh beat", celery["beat"], ("beat",)),
        # The flower image's CMD (Dockerfile).
        ("celery/entrypoint.sh flower", celery["flower"], ("flower",)),
        (
            "celery/healthcheck.py",
            _python(ROOT / "celery/healthcheck.py"),
            (*CELERY_WORKERS, "beat"),
        ),
        ("nginx/", _files("nginx/*.sh", "nginx/*.conf"), ("nginx",)),
        ("pgbouncer/", _files("pgbouncer/entrypoint.sh", "pgbouncer/*.template"), ("pgbouncer",)),
        ("postgres/", _files("postgres/entrypoint.sh"), ("db-primary", "db-replica")),
        ("redis/", _files("redis/entrypoint.sh"), ("redis", "redis-cache")),
    ]
    for role, code in monitoring.items():
        if role in by_role:
            table.append((f"monitoring/entrypoint.sh {role}", code, tuple(by_role[role])))
    return table


def reads(code: str, name: str) -> bool:
    return re.search(rf"(?<![A-Z0-9_]){name}(?![A-Z0-9_])", code) is not None


def render(env: dict[str, str], tmp_path: Path, *files: str) -> dict[str, dict[str, object]]:
    env_file = tmp_path / "env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    args = [a for f in files or ("docker-compose.yml",) for a in ("-f", f)]
    # Nothing from this shell's environment: it would win over the env file.
    clean = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "DOCKER_HOST"}}
    command = ["docker", "compose", *args, "--env-file", str(env_file), "--profile", "*"]
    result = subprocess.run(
        [*command, "config", "--format", "json"],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    services: dict[str, dict[str, object]] = json.loads(result.stdout)["services"]
    return services


def distinctive(name: str) -> str:
    return f"probe-{name.lower()}"


def expected_readers(
    names: Iterable[str], services: dict[str, dict[str, object]]
) -> dict[str, set[str]]:
    table = readers(services)
    expected: dict[str, set[str]] = {}
    for name in names:
        if name in ONLY:
            expected[name] = set(ONLY[name])
            continue
        found = {s for _, code, svcs in table if reads(code, name) for s in svcs}
        found |= set(LIBRARY_READERS.get(name, ()))
        expected[name] = found
    return expected


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, dict[str, object]]:
    env = {
        name: (value if name in HOST_ONLY else distinctive(name))
        for name, value in documented().items()
    }
    return render(env, tmp_path_factory.mktemp("compose"))


def _environment(service: dict[str, object]) -> dict[str, str]:
    return service.get("environment") or {}  # type: ignore[return-value]


def test_every_documented_variable_has_a_reader_or_is_host_only(rendered):
    names = [n for n in documented() if n not in HOST_ONLY]
    expected = expected_readers(names, rendered)
    assert [n for n in names if not expected[n]] == []


def test_host_only_variables_are_used_by_compose():
    files = ("docker-compose.yml", "docker-compose.tls.yml", "docker-compose.dev.yml")
    text = "".join((ROOT / name).read_text() for name in files)
    assert [n for n in sorted(HOST_ONLY) if not re.search(rf"\$\{{{n}\b", text)] == []


def test_a_value_in_env_reaches_every_process_that_reads_it(rendered):
    names = [n for n in documented() if n not in HOST_ONLY]
    expected = expected_readers(names, rendered)
    missing = []
    for name in names:
        for service in sorted(expected[name]):
            value = _environment(rendered[service]).get(name)
            if name in OTHER_INSTANCE.get(service, {}):
                source = OTHER_INSTANCE[service][name]
                if source is not None and value != distinctive(source):
                    missing.append(f"{name} -> {service} (got {value!r}, not {source})")
            elif name in WIRED:
                if value is None:
                    missing.append(f"{name} -> {service} (not set)")
            elif value != distinctive(name):
                missing.append(f"{name} -> {service} (got {value!r})")
    assert missing == [], f"{len({m.split()[0] for m in missing})} variables:\n" + "\n".join(
        missing
    )


def test_env_example_says_beside_each_wired_variable_that_compose_sets_it():
    """A deployer who sets one of these in .env would see nothing change: the comment block the
    variable sits in says so, naming it."""
    lines = (ROOT / ".env.example").read_text().splitlines()
    unsaid = []
    for name in sorted(WIRED):
        at = next(i for i, line in enumerate(lines) if line.startswith(f"{name}="))
        block = []
        while at > 0 and lines[at - 1].strip():
            at -= 1
            block.append(lines[at])
        said = " ".join(line[2:] for line in reversed(block) if line.startswith("# "))
        if not re.search(rf"Compose sets [^.]*\b{name}\b", said):
            unsaid.append(name)
    assert unsaid == []
