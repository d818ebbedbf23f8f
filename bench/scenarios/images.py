"""Scenario 8: the images' sizes and the stack's cold start."""
# This module's job is running docker with arguments it builds itself.
# ruff: noqa: S603, S607

import os
import subprocess
from typing import Any

from bench import claims, stack
from bench.scenarios.budget import CEILING as WEB_MB
from bench.stats import num, opening, pct, table

STEP = "images"
# The single-stage stand-in against the runtime web image (whose ceiling is the Makefile's).
SINGLE_OVER_MULTI = claims.get("images.single_over_multi_stage")


def measure(results: dict[str, Any], cold_start: dict[str, Any]) -> None:
    """Scenario 8: every image of the stack, and the web image against a single-stage stand-in
    (the Dockerfile's builder stage, which holds compilers, headers and pip's leftovers)."""
    names = ["web", "nginx", "upstream", "redis", "pgbouncer", "postgres", "mailcatcher"]
    sizes = {}
    for name in names:
        out = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Size}}", f"djstack/{name}:{stack.TAG}"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if out:
            sizes[name] = int(out)
    single = f"djstack/web-single-stage:{stack.TAG}"
    build = [
        "docker", "build", "--target", "builder", "-t", single,
        "--build-arg", f"BASE_IMAGE={os.environ.get('BASE_IMAGE', 'debian:trixie-slim')}",
        "--secret", f"id=ca_bundle,src={os.environ.get('BUILD_CA_BUNDLE') or '/dev/null'}",
        ".",
    ]  # fmt: skip
    stack.log("building the builder stage as the single-stage stand-in")
    subprocess.run(build, cwd=stack.ROOT, capture_output=True, check=True, timeout=900)
    single_size = int(
        subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Size}}", single],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    results["images"] = {
        "sizes_bytes": sizes,
        "web_single_stage_bytes": single_size,
        "web_limit_bytes": int(WEB_MB.value * 1000 * 1000),
        "cold_start": cold_start,
    }


def section(results: dict[str, Any], headline: list[list[str]]) -> list[str]:
    data, lines = opening(results, "images", "8. Images and start-up", items=None)
    if data is None:
        return lines
    sizes = data["sizes_bytes"]
    rows = [[name, num(size / 1e6, 0)] for name, size in sizes.items()]
    single = data["web_single_stage_bytes"]
    rows.append(["web, single-stage stand-in (`--target builder`)", num(single / 1e6, 0)])
    lines += table(["image (:bench)", "MB (uncompressed, `docker image inspect`)"], rows)
    web = sizes.get("web")
    # The ceiling of the run that measured these (the Makefile's may have moved since).
    limit_mb = data["web_limit_bytes"] / 1e6
    if web:
        lines += [
            f"Runtime web image **{web / 1e6:.0f} MB** against the {limit_mb:g} MB limit "
            f"(tests/images): {pct(web / data['web_limit_bytes'])} of it. The single-stage "
            f"stand-in (the builder stage: compilers, headers, python3-dev, the same venv) is "
            f"{single / 1e6:.0f} MB, **{single / web:.1f}x** the runtime image.",
            "",
        ]
        headline.append(
            [
                "8. web runtime image",
                f"{WEB_MB.sign} {limit_mb:g} MB",
                f"{web / 1e6:.0f} MB",
                pct(web / data["web_limit_bytes"]),
            ]
        )
        headline.append(
            [
                "8. single-stage / multi-stage web image",
                f"{SINGLE_OVER_MULTI.sign} {SINGLE_OVER_MULTI.value:g}x",
                f"{single / web:.1f}x",
                "-",
            ]
        )
    cold = data.get("cold_start") or {}
    if cold:
        lines += [
            f"Cold start, images built, volumes empty: `docker compose up -d --wait "
            f"{' '.join(cold['services'])}` (and their dependencies: migrate, PgBouncer, "
            f"Redis, the primary) took **{cold['seconds']} s** to all-healthy. The Celery "
            "services were not part of it (scenario 7 starts worker-reports on its own).",
            "",
        ]
        headline.append(["8. cold start to healthy (web path)", "-", f"{cold['seconds']} s", "-"])
    return lines
