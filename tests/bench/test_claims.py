"""bench/claims.toml holds every claim, limit and goal the report holds a measurement against:
each one is read by a scenario (bench/scenarios/), and no scenario compares a figure with a
number of its own."""

import ast
from pathlib import Path

import pytest

from bench import claims, report, run, stack

# make bench's scenarios, and make profile's (bench/profile.py).
SCENARIOS = [
    *sorted((stack.ROOT / "bench" / "scenarios").glob("*.py")),
    stack.ROOT / "bench" / "profile.py",
]
# Counts of rows ("fewer than two rows: nothing to compare") and zero are not thresholds.
COUNTS = {0, 1, 2}


def claims_read(path: Path) -> set[str]:
    """The keys a module reads: claims.get("s.name"), and claims.wording("s") as "s.claim"."""
    read = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "claims"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            key = node.args[0].value
            read.add(f"{key}.claim" if node.func.attr == "wording" else key)
    return read


def numbers_compared(path: Path) -> list[str]:
    """Numbers of the module's own inside comparisons (either side, arithmetic included): a
    literal, or a module-level name bound to a float literal (a threshold under a name)."""
    tree = ast.parse(path.read_text())
    floats = {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and type(node.value.value) is float
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        for operand in (node.left, *node.comparators):
            for leaf in ast.walk(operand):
                number = (
                    isinstance(leaf, ast.Constant)
                    and type(leaf.value) in (int, float)
                    and leaf.value not in COUNTS
                )
                if number or (isinstance(leaf, ast.Name) and leaf.id in floats):
                    found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_every_claim_is_read_by_a_scenario_and_every_key_read_exists():
    read = set().union(*(claims_read(path) for path in SCENARIOS))
    assert read == set(claims.names())


@pytest.mark.parametrize("key", [key for key in claims.names() if not key.endswith(".claim")])
def test_every_claim_says_how_a_figure_meets_it_and_where_it_comes_from(key):
    claim = claims.get(key)
    assert claim.source
    assert claim.compare in claims.SIGNS
    assert claim.compare != "about" or claim.tolerance > 0


def test_no_scenario_compares_a_figure_with_a_number_of_its_own():
    paths = [*SCENARIOS, Path(report.__file__), Path(run.__file__)]
    assert [line for path in paths for line in numbers_compared(path)] == []


def test_verdicts_follow_the_comparison():
    at_most = claims.get("reports.peak_ratio")
    assert [at_most.met(at_most.value + d) for d in (-0.01, 0, 0.01)] == [True, True, False]
    at_least = claims.get("login_flood.readers_share")
    assert [at_least.met(at_least.value + d) for d in (-0.01, 0, 0.01)] == [False, True, True]
    above = claims.get("preload.pss_saved")
    assert [above.met(above.value + d) for d in (-0.01, 0, 0.01)] == [False, False, True]
    about = claims.get("clients.shared_httpx_rps")  # 25 req/s, 10% either way
    assert [about.standing(v) for v in (22.0, 25.0, 28.0)] == ["behind", "met", "ahead"]
