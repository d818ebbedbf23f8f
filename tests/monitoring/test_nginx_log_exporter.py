"""Nginx's status copy and the log exporter (mtail) from the project's own images, on one
container pair: Nginx sends a UDP syslog line per response (nginx.conf, log_format status_line)
when NGINX_LOG_EXPORTER resolves, mtail counts them by status code (monitoring/mtail/), and
Nginx starts and serves as before when the name does not resolve (monitoring profile off)."""

from collections.abc import Iterator
from contextlib import contextmanager

import requests

from tests.support import docker, image, wait_until


@contextmanager
def container(*args: str) -> Iterator[str]:
    name = docker("run", "-d", "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", *args)
    cid = name.stdout.strip()
    try:
        yield cid
    finally:
        docker("rm", "-f", cid, check=False)


@contextmanager
def nginx(log_exporter: str) -> Iterator[tuple[str, str]]:
    """Nginx with no web behind it (web is 127.0.0.1:8000, where nothing listens: a 502)."""
    with container(
        "--add-host", "web:127.0.0.1", "--add-host", "log-exporter:127.0.0.1",
        "-e", f"NGINX_LOG_EXPORTER={log_exporter}", "-p", "127.0.0.1::8080", image("nginx"),
    ) as cid:  # fmt: skip
        port = docker("port", cid, "8080/tcp").stdout.splitlines()[0].rsplit(":", 1)[1]
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: requests.get(url + "/nginx-health", timeout=2).ok, timeout=20,
                   what="nginx")  # fmt: skip
        yield cid, url


def mtail_metrics(cid: str) -> str:
    fetch = (
        "exec 3<>/dev/tcp/127.0.0.1/3903 && "
        "printf 'GET /metrics HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && cat <&3"
    )
    return docker("exec", cid, "bash", "-c", fetch).stdout


def test_each_nginx_response_is_counted_by_status_in_the_log_exporter():
    with nginx("log-exporter:5140") as (cid, url):
        rendered = docker("exec", cid, "cat", "/tmp/nginx/log-exporter.conf").stdout
        assert "access_log syslog:server=log-exporter:5140" in rendered
        # mtail in Nginx's network namespace: "log-exporter" (127.0.0.1) is mtail's UDP 5140.
        with container("--network", f"container:{cid}", image("monitoring"),
                       "nginx-log-exporter") as mtail:  # fmt: skip
            wait_until(lambda: "mtail_build_info" in mtail_metrics(mtail), timeout=20,
                       what="mtail")  # fmt: skip
            # Until mtail listens, datagrams are dropped: send until one is counted.
            wait_until(
                lambda: (
                    requests.get(url + "/media/x", timeout=5).status_code == 404
                    and 'nginx_http_responses_total{status="404"}' in mtail_metrics(mtail)
                ),
                timeout=20,
                what="a 404 counted",
            )
            for _ in range(3):
                assert requests.get(url + "/api/products", timeout=10).status_code == 502

            def three_502s() -> str | None:
                metrics = mtail_metrics(mtail)
                return metrics if 'nginx_http_responses_total{status="502"} 3' in metrics else None

            metrics = wait_until(three_502s, timeout=20, what="three 502s counted")
            assert "nginx_upstream_failures_total 3" in metrics


def test_an_unresolvable_log_exporter_leaves_nginx_serving_without_the_copy():
    with nginx("nginx-log-exporter:5140") as (cid, url):
        assert requests.get(url + "/media/x", timeout=5).status_code == 404
        rendered = docker("exec", cid, "cat", "/tmp/nginx/log-exporter.conf").stdout
        assert "access_log" not in rendered
        assert "does not resolve" in docker("logs", cid).stderr


def test_a_malformed_log_exporter_refuses_to_start():
    with container("--add-host", "web:127.0.0.1", "-e", "NGINX_LOG_EXPORTER=no-port",
                   image("nginx")) as cid:  # fmt: skip
        wait_until(
            lambda: docker("inspect", "-f", "{{.State.Running}}", cid).stdout.strip() == "false",
            timeout=20,
            what="nginx exits",
        )
        assert docker("inspect", "-f", "{{.State.ExitCode}}", cid).stdout.strip() == "1"
        assert "NGINX_LOG_EXPORTER must be host:port" in docker("logs", cid).stderr
