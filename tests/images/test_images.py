"""What is inside the images: fixed non-root users, no build tools or secrets, Django's own
production checks run in the production image."""

import json
import os
import re
import secrets
import subprocess
import sys

import pytest

from tests.support import ROOT, container_health, docker, image, wait_until

UIDS = {
    "web": 10001,
    "flower": 10001,  # the web image plus Flower
    "nginx": 10002,
    "pgbouncer": 10003,
    "postgres": 10004,
    "redis": 10005,
    "mailcatcher": 10007,
    "monitoring": 10008,
}


def config(name: str) -> dict:
    return json.loads(
        docker("image", "inspect", "--format", "{{json .Config}}", image(name)).stdout
    )


def sh(name: str, script: str, *env: str) -> str:
    args = [arg for pair in (("-e", e) for e in env) for arg in pair]
    return docker(
        "run", "--rm", *args, "--entrypoint", "sh", image(name), "-c", script
    ).stdout.strip()


@pytest.mark.parametrize(("name", "uid"), UIDS.items())
def test_runs_as_a_fixed_non_root_uid(name, uid):
    assert config(name)["User"] == f"{uid}:{uid}"
    assert sh(name, "id -u") == str(uid)


@pytest.mark.parametrize("name", UIDS)
def test_has_a_healthcheck_and_no_apt_lists(name):
    assert config(name)["Healthcheck"]["Test"][0] in {"CMD", "CMD-SHELL"}
    assert sh(name, "ls /var/lib/apt/lists | grep -v -e '^lock$' -e '^partial$' || true") == ""


def test_flower_and_its_tornado_are_only_in_the_flower_image():
    check = (
        "import importlib.util as u; print(bool(u.find_spec('flower') and u.find_spec('tornado')))"
    )
    assert sh("web", f'python3 -c "{check}"') == "False"
    assert sh("flower", f'python3 -c "{check}"') == "True"


def test_development_packages_are_not_in_the_production_image():
    """The Debug Toolbar and watchfiles are the dev target's (`make dev`), never deployed."""
    check = (
        "import importlib.util as u; "
        "print([m for m in ('debug_toolbar', 'watchfiles') if u.find_spec(m)])"
    )
    assert sh("web", f'python3 -c "{check}"') == "[]"


def test_web_runtime_has_no_compiler_pip_or_cache():
    found = sh(
        "web",
        "for t in gcc cc c++ g++ make x86_64-linux-gnu-gcc pip pip3; do command -v $t; done; "
        "ls -d /root/.cache/pip /opt/venv/bin/pip 2>/dev/null; true",
    )
    assert found == ""
    assert sh("web", "python3 -c 'import sys; print(sys.version_info[:2])'") == "(3, 13)"


def test_web_image_is_exec_form_with_sigterm():
    cfg = config("web")
    assert cfg["Cmd"] == ["gunicorn", "--config", "gunicorn.conf.py"]
    assert cfg["StopSignal"] == "SIGTERM"


def test_code_is_read_only_for_the_app_user():
    assert sh("web", "touch /app/manage.py 2>&1 || echo denied").endswith("denied")


# The bench's and the fault tests' Django code (bench/django/, tests/stack/faultapp/): only the
# bench and fault images carry it, each with the settings module that routes it.
LAB_MODULES = (
    "bench_endpoints",
    "bench_settings",
    "bench_urls",
    "faults",
    "fault_settings",
    "fault_urls",
)


def test_the_tests_run_on_the_python_the_runtime_image_runs():
    """mypy, ruff and every test here check the product under its own Python minor version: the
    Makefile's IMAGE_PYTHON is the image's, and the venv running this test was made from it."""
    image_python = sh("web", "python3 -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'")
    declared = re.search(r"^IMAGE_PYTHON := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert declared is not None
    assert image_python == declared[1] == f"{sys.version_info.major}.{sys.version_info.minor}"


def test_the_runtime_image_has_no_bench_or_fault_code():
    check = f"import importlib.util as u; print([m for m in {LAB_MODULES!r} if u.find_spec(m)])"
    assert sh("web", f'python3 -c "{check}"') == "[]"
    assert sh("web", "ls -d /opt/bench /opt/faults 2>/dev/null; true") == ""


def test_no_environment_routes_more_than_the_product_in_the_runtime_image():
    """config.urls reads no switch: with the variables that once routed /bench/ and /faults/
    set, the product's URLs are still all there is."""
    assert sh("web", "grep -c environ config/urls.py; true") == "0"
    urls = (
        "import django; django.setup(); from django.urls import get_resolver; "
        "print(sorted(str(p.pattern) for p in get_resolver().url_patterns))"
    )
    env = ("DJANGO_SETTINGS_MODULE=config.settings", "BENCH_ENDPOINTS=true", "FAULT_ENDPOINTS=true")
    assert sh("web", f'python3 -c "{urls}"', *env) == "['admin/', 'api/']"


def test_a_build_without_a_target_makes_the_runtime_image():
    """A CI step that runs a plain `docker build .` gets the runtime image: Docker builds the
    last stage, which must not be a lab image (bench, faults) with its settings module."""
    secret = os.environ.get("BUILD_CA_BUNDLE") or "/etc/ssl/certs/ca-certificates.crt"
    # A tag of its own, removed afterwards: the build may be the very image web's tag names,
    # and removing it by ID would untag that.
    built = f"djstack/no-target:{secrets.token_hex(4)}"
    docker(
        "build",
        "-q",
        "-t",
        built,
        "--build-arg",
        f"BASE_IMAGE={os.environ.get('BASE_IMAGE', 'debian:trixie-slim')}",
        "--secret",
        f"id=ca_bundle,src={secret}",
        str(ROOT),
        timeout=900,
    )
    try:
        made = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", built).stdout)
        assert not [
            e for e in made["Env"] if e.startswith(("DJANGO_SETTINGS_MODULE=", "PYTHONPATH="))
        ]
        web = config("web")
        for key in ("Env", "Entrypoint", "Cmd", "User", "WorkingDir"):
            assert made.get(key) == web.get(key), key
    finally:
        docker("image", "rm", built, check=False)


@pytest.mark.parametrize(
    ("module", "folder"),
    [
        ("fault_settings", "tests/stack/faultapp"),
        ("bench_settings", "bench/django"),  # demo-shop
    ],
)
def test_a_lab_settings_module_refuses_production(module, folder):
    """A lab image deployed by mistake does not start: its settings module refuses
    APP_ENV=production (with every production secret given), and starts in local mode."""

    def start(*env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", "import django; django.setup()"],
            env={
                **os.environ,
                **dict(e.split("=", 1) for e in env),
                "DJANGO_SETTINGS_MODULE": module,
                "PYTHONPATH": f"{ROOT / 'app'}:{ROOT / folder}",
            },
            cwd=ROOT / "app",
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    refused = start(*production_env())
    assert refused.returncode != 0
    assert f"{module} is for the tests and the bench only" in refused.stderr
    assert start("APP_ENV=local").returncode == 0


def production_env() -> list[str]:
    return [
        "APP_ENV=production",
        f"DJANGO_SECRET_KEY={secrets.token_urlsafe(50)}",
        f"DB_PASSWORD={secrets.token_urlsafe(20)}",
        f"REDIS_PASSWORD={secrets.token_urlsafe(20)}",
        f"REDIS_CACHE_PASSWORD={secrets.token_urlsafe(20)}",
        "DJANGO_ALLOWED_HOSTS=www.example.com",
    ]


def test_check_deploy_passes_in_the_production_image():
    out = sh("web", "python3 manage.py check --deploy --fail-level WARNING 2>&1", *production_env())
    assert "System check identified no issues" in out


def test_migrations_match_the_models_in_the_production_image():
    out = sh("web", "python3 manage.py makemigrations --check --dry-run 2>/dev/null")
    assert out == "No changes detected"


@pytest.mark.parametrize("name", UIDS)
def test_no_build_secret_or_key_in_any_layer(name):
    history = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", image(name)).stdout
    assert "BEGIN CERTIFICATE" not in history
    assert "PRIVATE KEY" not in history
    # Regular files only: /usr/lib/ssl/cert.pem is Debian's link to the public CA bundle; certifi's
    # cacert.pem (requests, for the OTLP exporter) is Mozilla's public one.
    leftovers = sh(
        name,
        "ls /run/secrets 2>/dev/null; find / -xdev -type f \\( -name '*.pem' -o -name '*.key' "
        "-o -name '.env' -o -name 'id_rsa*' -o -name '*.p12' \\) -not -path '/proc/*' "
        "-not -path '/etc/ssl/certs/*' -not -path '/usr/share/ca-certificates/*' "
        "-not -path '*/site-packages/certifi/cacert.pem' 2>/dev/null; true",
    )
    assert leftovers == ""


def test_web_runtime_image_stays_under_its_ceiling():
    # Uncompressed, as `docker images` reports it; the single-stage size is in make bench.
    ceiling = re.search(r"^WEB_IMAGE_MAX_MB := (\d+)$", (ROOT / "Makefile").read_text(), re.M)
    assert ceiling is not None
    size = int(docker("image", "inspect", "--format", "{{.Size}}", image("web")).stdout)
    assert size <= int(ceiling[1]) * 1000 * 1000, f"{size / 1e6:.0f} MB > {ceiling[1]} MB"


# Every ELF file of the image and the libraries ldd finds missing for it.
MISSING_LIBRARIES = """
import os, subprocess
elves = []
for top in ("/usr", "/opt"):
    for folder, _, files in os.walk(top):
        for name in files:
            path = os.path.join(folder, name)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as file:
                    if file.read(4) == b"\\x7fELF":
                        elves.append(path)
for start in range(0, len(elves), 200):
    out = subprocess.run(["ldd", *elves[start:start + 200]], capture_output=True, text=True).stdout
    for chunk in out.replace("\\n/", "\\n\\0/").split("\\n\\0"):
        if "not found" in chunk:
            print(chunk.splitlines()[0])
"""


def test_the_runtime_filesystem_has_no_installer_and_every_library_it_links():
    """The runtime image is a pruned filesystem: nothing that installs software, yet every
    program and extension module in it finds every shared library it links."""
    tools = "apt apt-get dpkg perl useradd su mount tar openssl"
    assert sh("web", f"for t in {tools}; do command -v $t; done; true") == ""
    assert sh("web", "ls /var/lib/dpkg") == "status"
    assert sh("web", f"python3 -c '{MISSING_LIBRARIES}'") == ""


def test_psycopg_is_the_c_implementation_on_debians_libpq():
    """No second libpq, libssl and libcrypto from a binary wheel: psycopg's C module links
    Debian's."""
    check = (
        "import importlib.util as u, psycopg; "
        "print(psycopg.pq.__impl__, bool(u.find_spec('psycopg_binary')))"
    )
    assert sh("web", f'python3 -c "{check}"') == "c False"
    linked = sh("web", "ldd /opt/venv/lib/python3.13/site-packages/psycopg_c/*.so")
    assert re.search(r"libpq\.so\.5 => /(usr/)?lib/x86_64-linux-gnu/libpq\.so\.5 ", linked), linked


def test_tracebacks_show_source_lines_from_bytecode_compiled_once():
    script = "import django.utils.dateparse as d; d.parse_date(chr(50) * 4 + '-13-45')"
    out = sh("web", f'python3 -c "{script}" 2>&1; true')
    assert re.search(r'File "/opt/venv/[^"]+/django/[^"]+", line \d+, in \w+\n +\S', out), out
    # One compiled level: no -O/-OO copies beside the plain .pyc files.
    assert sh("web", "find /app /opt/venv -name '*.opt-?.pyc' | head -n1") == ""


@pytest.mark.parametrize(
    ("role", "variable"),
    [
        ("replica", "REPLICATION_PASSWORD"),
        ("primary", "REPLICATION_PASSWORD"),
        ("primary", "DB_PASSWORD"),
        ("primary", "MONITORING_DB_PASSWORD"),
    ],
)
def test_postgres_refuses_a_dev_only_password_in_production(role, variable):
    env = {
        "APP_ENV": "production",
        "PG_ROLE": role,
        "DB_PASSWORD": secrets.token_urlsafe(20),
        "REPLICATION_PASSWORD": secrets.token_urlsafe(20),
        "MONITORING_DB_PASSWORD": secrets.token_urlsafe(20),
        # Nothing answers here: a replica that got past the check would wait for it, so the
        # run is bounded (exit 124) instead.
        "PRIMARY_HOST": "127.0.0.1",
        variable: f"dev-only-{variable.lower()}",
    }
    args = [arg for name, value in env.items() for arg in ("-e", f"{name}={value}")]
    result = docker(
        "run", "--rm", *args, "--entrypoint", "timeout", image("postgres"),
        "15", "/usr/local/bin/entrypoint.sh",
        check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert f"{variable} is a dev-only- value" in result.stderr


def test_postgres_accepts_a_dev_only_password_outside_production():
    # Local development keeps its placeholders: the check is production's only.
    result = docker(
        "run", "--rm", "-e", "PG_ROLE=replica", "-e", "PRIMARY_HOST=127.0.0.1",
        "-e", "REPLICATION_PASSWORD=dev-only-replication",
        "--entrypoint", "timeout", image("postgres"), "5", "/usr/local/bin/entrypoint.sh",
        check=False, timeout=60,
    )  # fmt: skip
    assert "dev-only" not in result.stderr
    assert "cloning 127.0.0.1" in result.stdout


def test_pgbouncer_refuses_a_dev_only_stats_password_in_production():
    result = docker(
        "run", "--rm", "-e", "APP_ENV=production", "-e", f"DB_PASSWORD={secrets.token_urlsafe(20)}",
        "-e", "PGBOUNCER_STATS_PASSWORD=dev-only-pgbouncer-stats",
        "--entrypoint", "timeout", image("pgbouncer"), "15", "/etc/pgbouncer/entrypoint.sh",
        check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "PGBOUNCER_STATS_PASSWORD is a dev-only- value" in result.stderr


# The database exporters' roles (monitoring/entrypoint.sh) and the secret each reads.
EXPORTER_ENV = {
    "postgres-exporter": (
        "MONITORING_DB_PASSWORD",
        ["PG_EXPORTER_HOST=127.0.0.1", "DB_NAME=app", "MONITORING_DB_USER=monitoring"],
    ),
    "pgbouncer-exporter": (
        "PGBOUNCER_STATS_PASSWORD",
        ["PGBOUNCER_HOST=127.0.0.1", "PGBOUNCER_STATS_USER=pgbouncer_stats"],
    ),
}


def run_exporter(role: str, env: list[str], *mounts: str, seconds: int = 5):
    """The exporter's entrypoint, bounded: past its checks it serves until `timeout` (124)."""
    args = [arg for e in env for arg in ("-e", e)] + [a for m in mounts for a in ("-v", m)]
    return docker(
        "run", "--rm", "--read-only", "--tmpfs", "/tmp", *args, "--entrypoint", "timeout",
        image("monitoring"), str(seconds), "/opt/monitoring/entrypoint.sh", role,
        check=False, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize("role", EXPORTER_ENV)
def test_exporters_refuse_a_dev_only_password_in_production(role):
    variable, env = EXPORTER_ENV[role]
    refused = run_exporter(role, ["APP_ENV=production", f"{variable}=dev-only-x", *env])
    assert refused.returncode == 1, (refused.returncode, refused.stderr)
    assert f"{variable} is a dev-only- value" in refused.stderr
    # A real one passes the checks: the exporter itself starts (and, with no server at the
    # address, the PgBouncer one exits on its own error; the entrypoint printed nothing).
    real = f"{variable}={secrets.token_urlsafe(20)}"
    started = run_exporter(role, ["APP_ENV=production", real, *env])
    assert f"monitoring ({role})" not in started.stderr, started.stderr
    assert "dev-only" not in started.stderr


@pytest.mark.parametrize("role", EXPORTER_ENV)
def test_exporters_read_a_secret_file_first_and_refuse_its_dev_only_value(role, tmp_path):
    """Kubernetes mounts the Secret's key as /run/secrets/<NAME> (k8s/components/monitoring):
    the file wins over the variable, and is checked like it."""
    variable, env = EXPORTER_ENV[role]
    secret = tmp_path / variable
    secret.write_text("dev-only-from-a-file\n")
    secret.chmod(0o644)
    mount = f"{secret}:/run/secrets/{variable}:ro"
    real = f"{variable}={secrets.token_urlsafe(20)}"
    refused = run_exporter(role, ["APP_ENV=production", real, *env], mount)
    assert refused.returncode == 1, (refused.returncode, refused.stderr)
    assert f"{variable} is a dev-only- value" in refused.stderr


def test_a_second_postgres_on_the_same_volume_refuses_to_start():
    # `docker compose up --scale db-replica2=2` gives both containers the one named volume.
    volume = f"pg-lock-test-{secrets.token_hex(4)}"
    env = ["-e", "DB_PASSWORD=x", "-e", "REPLICATION_PASSWORD=x", "-e", "MONITORING_DB_PASSWORD=x"]
    mount = ["-v", f"{volume}:/var/lib/postgresql/data"]
    first = docker("run", "-d", *env, *mount, image("postgres")).stdout.strip()
    second_name = f"{volume}-second"
    try:
        up = lambda: container_health(first) == "healthy"  # noqa: E731
        wait_until(up, timeout=120, what="the first server")
        second = docker(
            "run", "--rm", "--name", second_name, *env, *mount, image("postgres"),
            check=False, timeout=60,
        )  # fmt: skip
        assert second.returncode == 1, (second.returncode, second.stdout, second.stderr)
        assert "another server already runs on /var/lib/postgresql/data" in second.stderr
        # The first one is untouched and still answers.
        assert container_health(first) == "healthy"
    finally:
        docker("rm", "-f", "-v", first, second_name, check=False)
        docker("volume", "rm", "-f", volume, check=False)
