"""A report's CSV from its orders. Pure: it reads the orders it is given and writes to the file
it is given; the database and the run's heartbeat stay with the caller (reports.services.run)."""

import csv
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Protocol, TextIO

CSV_HEADER = ["date", "product_id", "product_name", "orders", "units", "revenue"]
# A cell a spreadsheet would read as a formula (OWASP's CSV injection): a product name is staff
# input, and a report is opened by whoever downloads it. A ' goes before a formula's first
# character wherever a cell could start with it: at the start of the name, and after any
# character a spreadsheet may split cells or lines at (a ; splits this file's lines in Excel
# set to a ;-separated locale), past spaces and quotes. Spreadsheets show the ' as text's mark.
_FORMULA_AT_A_CELL_START = re.compile(r"(^|[,;\t|\r\n])([ \"']*)(?=[=+\-@\t\r])")


def _as_text(cell: str) -> str:
    return _FORMULA_AT_A_CELL_START.sub(r"\1\2'", cell)


class OrderLine(Protocol):
    @property
    def product_id(self) -> int: ...
    @property
    def product_name(self) -> str: ...
    @property
    def quantity(self) -> int: ...
    @property
    def unit_price(self) -> Decimal: ...


class OrderWithLines(Protocol):
    """An order as the report reads it (reports.selectors.OrderLines)."""

    @property
    def created_at(self) -> datetime: ...
    @property
    def lines(self) -> Sequence[OrderLine]: ...


@dataclass
class Totals:
    orders: int = 0
    units: int = 0
    revenue: Decimal = field(default_factory=lambda: Decimal("0"))


@dataclass
class _Cell:
    """One CSV line in the making: a product on a day, under one name it was sold under."""

    orders: int = 0
    units: int = 0
    revenue: Decimal = field(default_factory=lambda: Decimal("0"))


def report_csv_write(*, out: TextIO, orders: Iterable[OrderWithLines]) -> Totals:
    """Per day and product: orders, units, revenue; then a total line. Returns the totals.

    A product renamed during a day has a line for each name it was sold under: the name is the
    order line's, frozen when the order was placed, as the order's own page shows it.

    `orders` must come oldest first: a day is complete when the next one starts, so only that
    day's products are held in memory, and `orders` may be a stream of any length.
    """
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    totals = Totals()
    day: date | None = None
    products: dict[tuple[int, str], _Cell] = {}  # the current day's, by product id and name

    def flush() -> None:
        for pid, name in sorted(products):
            cell = products[pid, name]
            row = [day, pid, _as_text(name), cell.orders, cell.units, f"{cell.revenue:.2f}"]
            writer.writerow(row)
        products.clear()

    for order in orders:
        if not order.lines:
            continue
        order_day = order.created_at.date()
        if order_day != day:
            flush()
            day = order_day
        totals.orders += 1
        seen: set[tuple[int, str]] = set()
        for line in order.lines:
            amount = line.quantity * line.unit_price
            key = (line.product_id, line.product_name)
            cell = products.get(key)
            if cell is None:
                cell = products[key] = _Cell()
            if key not in seen:  # an order counts once per product
                seen.add(key)
                cell.orders += 1
            cell.units += line.quantity
            cell.revenue += amount
            totals.units += line.quantity
            totals.revenue += amount
    flush()
    writer.writerow(["total", "", "", totals.orders, totals.units, f"{totals.revenue:.2f}"])
    return totals
