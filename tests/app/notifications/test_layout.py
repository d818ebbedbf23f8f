"""The outbox serves every domain and depends on none: each domain composes its own emails (in
its own notifications module) and hands them to notifications.services."""

import ast
from pathlib import Path

import notifications

DOMAINS = (
    "accounts",
    "shop",  # demo-shop
    "reports",  # demo-shop
)


def test_notifications_imports_no_domain():
    package = Path(notifications.__file__).parent
    found = []
    for module in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(module.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            found += [
                f"{module.relative_to(package)}: {name}"
                for name in names
                if name.split(".")[0] in DOMAINS
            ]
    assert found == []
