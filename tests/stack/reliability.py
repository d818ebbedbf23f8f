"""The fault suite's numbers: each scenario appends one record to build/reliability.json, and
docs/RELIABILITY.md is written from the last run's records (at the end of test_faults.py, or by
`make reliability-report`)."""

import json
import time
from pathlib import Path
from typing import Any

from tests.support import ROOT

RECORDS = ROOT / "build" / "reliability.json"
REPORT = ROOT / "docs" / "RELIABILITY.md"


def record(scenario: str, *, load: str, sent: int, errors: int, lost: int, notes: str) -> None:
    """One row: the scenario, the load it ran under, requests sent, errors a user saw, data lost."""
    RECORDS.parent.mkdir(parents=True, exist_ok=True)
    rows: dict[str, Any] = json.loads(RECORDS.read_text()) if RECORDS.exists() else {}
    rows[scenario] = {
        "load": load,
        "sent": sent,
        "errors": errors,
        "lost": lost,
        "notes": notes,
        "at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    RECORDS.write_text(json.dumps(rows, indent=2) + "\n")


def write_report() -> Path:
    rows: dict[str, Any] = json.loads(RECORDS.read_text()) if RECORDS.exists() else {}
    lines = [
        "# Reliability: faults and load on the compose stack",
        "",
        "Generated from the latest record of each scenario of `tests/stack/test_faults.py` (and",
        "of the replica-during-writes scenarios of `tests/stack/test_shop.py`)",
        "(build/reliability.json; *run at* says when);",
        "regenerate with `make reliability-report` after running the suite. *Sent*: requests the",
        "scenario's clients sent; *errors*: requests a client saw fail (an unexpected status or a",
        "broken connection), expected answers such as the 504 of a hung request aside;",
        "*lost*: writes acknowledged or retried by the client whose row is not in the database.",
        "",
        "| scenario | load | sent | errors | lost | what happened | run at |",
        "| --- | --- | ---: | ---: | ---: | --- | --- |",
    ]
    for name, row in rows.items():
        cells = [
            name,
            row["load"],
            row["sent"],
            row["errors"],
            row["lost"],
            row["notes"],
            row["at"],
        ]
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    lines += [
        "",
        "Known gaps (the rows say when they showed):",
        "",
        "- Primary down: a customer's token is checked on the primary, so authenticated reads get",
        "  the JSON 503 as well; only anonymous reads are served from the replica.",
        "- Hung worker: requests Nginx had already sent down a keep-alive connection of the hung",
        "  worker wait with it and get the same 504.",
    ]
    REPORT.write_text("\n".join(lines) + "\n")
    return REPORT


if __name__ == "__main__":
    print(write_report())
