"""Scenario 13: where the runtime web image's bytes go (base, Python, venv, app, static), read
from the image's files; needs the image only, not the running stack."""
# This module's job is running docker with arguments it builds itself.
# ruff: noqa: S603, S607

import re
import subprocess
from typing import Any

from bench import claims, stack
from bench.stats import num, opening, pct, table

STEP = "budget"
PARTS = ("base", "python", "venv", "app", "static")
# Every regular file and link of the image's one filesystem, with its size: what the image's
# uncompressed size adds up.
LISTING = ["find", "/", "-xdev", "!", "-type", "d", "-printf", "%s %p\\n"]


def web_image_max_mb() -> float:
    """The ceiling tests/images holds the runtime web image to: the Makefile's one variable."""
    found = re.search(r"^WEB_IMAGE_MAX_MB := (\d+)$", (stack.ROOT / "Makefile").read_text(), re.M)
    if found is None:
        raise ValueError("Makefile: no WEB_IMAGE_MAX_MB")
    return float(found[1])


CEILING = claims.Claim(
    key="budget.web_mb",
    value=web_image_max_mb(),
    compare="at most",
    source="Makefile: WEB_IMAGE_MAX_MB, the runtime web image's ceiling (tests/images)",
)


def part_of(path: str) -> str:
    """The budget line a file of the runtime web image counts under."""
    if path.startswith("/app/staticfiles/"):
        return "static"
    if path.startswith(("/app/", "/opt/celery/")):
        return "app"
    if path.startswith("/opt/venv/"):
        return "venv"
    if re.match(r"/usr/(lib|bin)/python3", path) or path.startswith("/etc/python3"):
        return "python"
    return "base"


def breakdown(listing: str) -> dict[str, int]:
    """Bytes per budget line from `find -printf '%s %p\\n'` output (paths may hold spaces)."""
    parts = dict.fromkeys(PARTS, 0)
    for line in listing.splitlines():
        size, _, path = line.partition(" ")
        if size.isdigit() and path:
            parts[part_of(path)] += int(size)
    return parts


def measure(results: dict[str, Any]) -> None:
    name = f"djstack/web:{stack.TAG}"
    listing = subprocess.run(
        ["docker", "run", "--rm", "--user", "0", "--entrypoint", LISTING[0], name, *LISTING[1:]],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    size = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Size}}", name],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    parts = breakdown(listing)
    results[STEP] = {
        "image": name,
        "image_bytes": int(size),
        "parts_bytes": parts,
        "limit_bytes": int(CEILING.value * 1000 * 1000),
    }
    stack.log(
        f"{name}: {int(size) / 1e6:.1f} MB of {CEILING.value:g}; "
        + ", ".join(f"{part} {parts[part] / 1e6:.1f}" for part in PARTS)
    )


# Measured once, on the image before issue 24 (196.0 MB, one layer per stage) and after each
# step; the table above is this run's.
BEFORE = [
    ["base", "85.7", "perl-base 11.5, glibc's iconv modules 8.1, apt 4.8, util-linux 4.3, "
     "dpkg's database 3.1, libcrypto 6.5 (kept)"],
    ["python", "30.1", "stdlib .py 9.6, its .pyc 10.1, the interpreter 6.8"],
    ["venv", "82.4", ".pyc 31.3, .py 26.7, .so 21.5 (psycopg-binary's bundled libcrypto, libssl, "
     "libpq, Kerberos, LDAP 9.6); django 23, redis 5.9, opentelemetry 5.9, wcwidth 5.4; Django's "
     "remaining locale files 0.2 (formats only)"],
    ["app", "0.8", "code and its .pyc; static is the manifest only"],
]  # fmt: skip
STEPS = [
    ["psycopg's C implementation built on Debian's libpq5 (which adds 2.6 of Kerberos, LDAP and "
     "libpq, against 10.8 of the binary wheel)", "7.1"],
    ["apt, dpkg (its status file stays), debconf, perl-base, passwd, tar, diffutils, the openssl "
     "CLI and the libraries only they load, purged", "25.8"],
    ["util-linux, mount, bsdutils (su, mount, disk and login tools)", "5.1"],
    ["glibc's iconv modules (CPython has its own codecs), CPython's test extension modules",
     "9.1"],
    ["Django's GIS, Oracle and MySQL code (no GDAL, GEOS or driver to load it)", "1.7"],
    ["the packages' tests/ directories (certifi's)", "0.0"],
    ["the pruned system copied into `FROM scratch` as one layer (a layer's deletions free "
     "nothing of the base image's layer below), the venv and the code in layers above it",
     "enables the above"],
]  # fmt: skip


def section(results: dict[str, Any], headline: list[list[str]]) -> list[str]:
    data, lines = opening(results, STEP, "13. The web image's budget", items=None)
    if data is None:
        return lines
    parts = data["parts_bytes"]
    total = data["image_bytes"]
    rows = [[part, num(parts[part] / 1e6, 1), pct(parts[part] / total)] for part in PARTS]
    rows.append(["image (`docker image inspect`)", num(total / 1e6, 1), "100%"])
    lines += [
        f"`{data['image']}`, read from its files: base is Debian (libc, OpenSSL, libpq, "
        "coreutils), Python is /usr/lib/python3.13 and the interpreter, static is what Django "
        "reads of the collected files (their manifest; Nginx's image holds the files).",
        "",
    ]
    lines += table(["part", "MB", "share"], rows)
    lines += ["Before issue 24 (196.0 MB), where the bytes went:", ""]
    lines += table(["part", "MB", "the largest"], BEFORE)
    lines += ["Each step's saving:", ""]
    lines += table(["step", "MB saved"], STEPS)
    lines += [
        "Kept: every .py beside its .pyc (tracebacks show source lines), pip's one compile per "
        "module (no .opt-1/.opt-2 copies; PYTHONDONTWRITEBYTECODE stops any later write), "
        "Django's locale formats (only the message catalogues go: USE_I18N is off).",
        "",
    ]
    headline.append(
        [
            "13. web image budget",
            f"{CEILING.sign} {CEILING.value:g} MB",
            f"{total / 1e6:.0f} MB",
            pct(total / data["limit_bytes"]),
        ]
    )
    return lines
