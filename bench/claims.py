"""The claims, limits and goals of bench/claims.toml, and whether a measured figure meets one.
The scenarios (bench/scenarios/) render their verdicts from these and the measurements."""

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

FILE = Path(__file__).with_name("claims.toml")
# How each comparison is written in the report's tables.
SIGNS = {"at least": "≥", "at most": "≤", "above": ">", "about": "~"}


@dataclass(frozen=True)
class Claim:
    key: str
    value: float
    compare: str
    source: str
    subject: str = ""
    tolerance: float = 0.0
    behind: str = ""

    @property
    def sign(self) -> str:
        return SIGNS[self.compare]

    def met(self, measured: float) -> bool:
        if self.compare == "at least":
            return measured >= self.value
        if self.compare == "at most":
            return measured <= self.value
        if self.compare == "above":
            return measured > self.value
        return self.standing(measured) == "met"

    def standing(self, measured: float) -> str:
        """ "behind", "ahead" or "met": for "about", outside the tolerance either way."""
        if self.compare == "about":
            if measured < (1 - self.tolerance) * self.value:
                return "behind"
            if measured > (1 + self.tolerance) * self.value:
                return "ahead"
            return "met"
        return "met" if self.met(measured) else "behind"


@cache
def _data() -> dict[str, Any]:
    with FILE.open("rb") as file:
        return tomllib.load(file)


def get(key: str) -> Claim:
    """One figure, by "<scenario>.<name>"."""
    scenario, name = key.split(".")
    entry = _data()[scenario][name]
    if entry["compare"] not in SIGNS:
        raise ValueError(f"{key}: compare must be one of {', '.join(SIGNS)}")
    return Claim(key=key, **entry)


def wording(scenario: str) -> str:
    """The scenario's claim in the words its section quotes."""
    return str(_data()[scenario]["claim"])


def names() -> list[str]:
    """Every figure's key, and "<scenario>.claim" for every wording."""
    return [f"{scenario}.{name}" for scenario, table in _data().items() for name in table]
