"""Scripts the bench runs inside the stack's containers (`python3 -c`), kept as files so that
ruff checks them. The containers have no copy of this folder: a script's
`from <module> import ...  # inlined` line is replaced by that module's source."""

import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
INLINED = re.compile(r"^from (\w+) import [\w, ]+  # inlined.*$", flags=re.MULTILINE)


def script(name: str) -> str:
    """bench/incontainer/<name>.py, with the modules it inlines put in place of their imports."""
    return INLINED.sub(
        lambda m: (HERE / f"{m.group(1)}.py").read_text(), (HERE / f"{name}.py").read_text()
    )
