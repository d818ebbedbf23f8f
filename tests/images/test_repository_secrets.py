"""No secret in the repository: no key or env files tracked, and every password-like value
in a tracked file is a `dev-only-` placeholder, a reference to the environment, or empty."""

import math
import re
from collections import Counter
from pathlib import Path

import pytest

from tests.support import ROOT, run

# Files that must never be tracked, whatever they hold.
FORBIDDEN = re.compile(
    r"(^|/)(\.env(\..+)?|id_rsa.*|id_ed25519.*|secrets\.env|.*\.(pem|key|p12|pfx|crt|keystore))$"
)
# Templates that list names with placeholder values.
ALLOWED = {".env.example", "k8s/secrets.env.example"}
# NAME = "value" / NAME: value / NAME=value, for names that hold secrets.
ASSIGNMENT = re.compile(
    r"""(?ix)\b[\w.-]*(password|passwd|secret|token|api_key|apikey|private_key)[\w.-]*
        \s*[:=]\s*["']?([^\s"',;(){}]{8,})"""
)
# Key material anywhere.
KEY_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+ )?PRIVATE KEY-----")


def tracked() -> list[str]:
    return run("git", "ls-files", cwd=ROOT).stdout.splitlines()


def entropy(value: str) -> float:
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def looks_secret(value: str) -> bool:
    """Long, mixed, random-looking: not a word, a path, a variable or a placeholder."""
    if value.startswith(("dev-only-", "$", "{", "<", "/", "http", "os.", "env", "settings.")):
        return False
    if not re.search(r"\d", value) or not re.search(r"[A-Za-z]", value):
        return False
    return len(value) >= 16 and entropy(value) >= 3.5


@pytest.mark.parametrize("path", ["x/.env", "tls/tls.key", "deploy/id_rsa", "a/cert.pem"])
def test_the_file_pattern_catches_what_it_should(path):
    assert FORBIDDEN.search(path)


def test_the_value_check_tells_secrets_from_placeholders():
    assert looks_secret("q8ZP1xv2Lr7TbW4nK9mYc3Hd")
    assert not looks_secret("dev-only-insecure-secret-key")
    assert not looks_secret("${DB_PASSWORD}")
    assert not looks_secret("token_urlsafe")


def test_no_key_or_env_file_is_tracked():
    found = [p for p in tracked() if FORBIDDEN.search(p) and p not in ALLOWED]
    assert not found, f"tracked files that must never be committed: {found}"


def test_no_private_key_or_password_like_value_in_tracked_files():
    found = []
    for name in tracked():
        path = ROOT / name
        if not path.is_file() or path.suffix in {".lock", ".png", ".svg"}:
            continue
        text = Path(path).read_text(errors="replace")
        if KEY_BLOCK.search(text):
            found.append(f"{name}: private key block")
        for match in ASSIGNMENT.finditer(text):
            if looks_secret(match.group(2)):
                found.append(f"{name}: {match.group(0)[:60]}")
    assert not found, "possible secrets in the repository:\n" + "\n".join(found)
