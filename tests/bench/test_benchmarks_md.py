"""docs/BENCHMARKS.md is what bench/report.py renders from the committed results.json: the
report's code (bench/report.py, bench/scenarios/, bench/claims.toml) can move without changing
a byte of it."""

import json

from bench import report


def test_the_committed_results_render_to_the_committed_markdown():
    results = json.loads((report.OUT / "results.json").read_text())
    # The plots report.main links are the ones it wrote beside the Markdown.
    plots = [
        f"{endpoint}-{label}.png"
        for endpoint in ("fanout", "product-page")
        for label in ("c100", "c1000")
    ]
    plots = [name for name in plots if (report.OUT / name).exists()]
    assert report.render(results, plots) == report.MARKDOWN.read_text()
