"""make bench's pure parts: hey's output parsed, repeated runs combined. No Docker, no hey."""

from bench.scenarios import budget, images

from bench import hey, stats

HEY_OK = """
Summary:
  Total:\t3.1000 secs
  Slowest:\t0.6685 secs
  Fastest:\t0.3012 secs
  Average:\t0.4206 secs
  Requests/sec:\t322.5806

  Total data:\t18000 bytes
  Size/request:\t18 bytes

Latency distribution:
  10% in 0.3349 secs
  25% in 0.3618 secs
  50% in 0.4206 secs
  75% in 0.4833 secs
  90% in 0.5657 secs
  95% in 0.6211 secs
  99% in 0.6685 secs

Status code distribution:
  [200]\t990 responses
  [502]\t10 responses
"""

HEY_FAILED = """
Summary:
  Total:\t1.0031 secs
  Slowest:\t0.0000 secs
  Fastest:\t0.0000 secs
  Average:\t NaN secs
  Requests/sec:\t19.9390

Status code distribution:

Error distribution:
  [15]\tGet "http://h/x": context deadline exceeded (Client.Timeout exceeded while awaiting headers)
  [5]\tGet "http://h/x": read tcp 1->2: read: connection reset by peer
"""

SMALL_RUN = """
Summary:
  Total:\t0.0476 secs
  Average:\t0.0038 secs
  Requests/sec:\t1051.4895

Latency distribution:
  10% in 0.0006 secs
  95% in 0.0277 secs
  0% in 0.0000 secs

Status code distribution:
  [200]\t50 responses
"""


def test_summary_percentiles_and_statuses():
    result = hey.parse(HEY_OK)
    assert result["total_s"] == 3.1
    assert result["average_s"] == 0.4206
    assert result["percentiles_s"][50] == 0.4206
    assert result["percentiles_s"][99] == 0.6685
    assert result["status"] == {200: 990, 502: 10}
    assert (result["ok"], result["failed"], result["requests"]) == (990, 10, 1000)
    # 2xx per second, not hey's figure (which counts the 502s too).
    assert result["ok_rps"] == round(990 / 3.1, 2)


def test_errors_without_answers():
    result = hey.parse(HEY_FAILED)
    assert result["average_s"] is None
    assert result["ok"] == 0
    assert result["failed"] == 20
    assert result["ok_rps"] == 0
    kinds = {hey.error_kind(message) for message in result["errors"]}
    assert kinds == {"client timeout", "connection reset"}


def test_percentile_hey_could_not_reach_is_left_out():
    result = hey.parse(SMALL_RUN)
    assert result["percentiles_s"] == {10: 0.0006, 95: 0.0277}


def test_repeated_runs_are_combined_by_median_and_sum():
    runs = [hey.parse(HEY_OK), hey.parse(HEY_OK), hey.parse(HEY_FAILED)]
    combined = stats.combine(runs)
    assert combined["rps"] == round(990 / 3.1, 2)
    assert combined["requests"] == 2020
    assert combined["errors"]["HTTP 502"] == 20
    assert combined["errors"]["client timeout"] == 15
    assert stats.errors_text(combined).startswith("40 (")


def test_ratio_and_formatting():
    assert stats.ratio(250, 333.3) == 250 / 333.3
    assert stats.ratio(None, 333.3) is None
    assert stats.pct(0.75) == "75%"
    assert stats.ms(0.4206) == "421"
    assert stats.table(["a", "b"], [["1", "2"]]) == ["| a | b |", "|---|---|", "| 1 | 2 |", ""]


def test_the_web_image_budget_adds_up_each_file_under_its_part():
    listing = "\n".join(
        [
            "1000 /usr/lib/x86_64-linux-gnu/libc.so.6",
            "200 /usr/lib/python3.13/os.py",
            "300 /usr/bin/python3.13",
            "40 /etc/python3.13/sitecustomize.py",
            "5000 /opt/venv/lib/python3.13/site-packages/django/__init__.py",
            "7 /opt/venv/bin/python3",
            "60 /app/manage.py",
            "8 /opt/celery/entrypoint.sh",
            "90 /app/staticfiles/staticfiles.json",
            "11 /app/a file with spaces.py",
            "find: '/proc/1': Permission denied",
            "",
        ]
    )
    assert budget.breakdown(listing) == {
        "base": 1000,
        "python": 540,
        "venv": 5007,
        "app": 79,
        "static": 90,
    }


def test_the_web_image_ceiling_is_the_makefiles_one_variable():
    makefile = (budget.stack.ROOT / "Makefile").read_text()
    assert f"\nWEB_IMAGE_MAX_MB := {budget.web_image_max_mb():g}\n" in makefile
    assert images.WEB_MB is budget.CEILING
