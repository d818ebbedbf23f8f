"""The admin as a superuser sees it, through Django's test client on the real test database:
every model of the project's apps registered, its list page rendering a row, search, and every
search field and filter choice (an app's own admin forms are tested with the app)."""

from datetime import date  # demo-shop
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from django.apps import apps
from django.contrib import admin
from django.db.models import Model
from django.urls import reverse

from accounts.models import ApiToken
from accounts.services import api_token_create
from notifications.models import OutboxEmail
from reports.models import Report  # demo-shop
from shop.models import Order, Product  # demo-shop
from tests.app.accounts.factories import UserFactory
from tests.app.shop.factories import OrderItemFactory  # demo-shop
from tests.support import ROOT

# Committed transactions: the admin's list pages read through the replica alias, a second
# connection, which cannot see rows inside another connection's open test transaction.
pytestmark = pytest.mark.django_db(databases=["default", "replica"], transaction=True)


def project_apps() -> list[str]:
    """The apps in app/ (not Django's, not the libraries'): a new one is checked unlisted."""
    return [c.label for c in apps.get_app_configs() if Path(c.path).is_relative_to(ROOT / "app")]


@pytest.fixture
def rows() -> dict[type[Model], Model]:
    """One row of every model, whose list pages must show it."""
    customer = UserFactory(username="ada", email="ada@example.com")
    _, token = api_token_create(user=customer)
    email = OutboxEmail.objects.create(
        key="order-confirmation:1", recipient="ada@example.com", subject="s", body="b"
    )
    rows: dict[type[Model], Model] = {type(customer): customer, ApiToken: token, OutboxEmail: email}
    # demo-shop: begin
    item = OrderItemFactory(order__customer=customer, product__name="Teapot")
    report = Report.objects.create(
        owner=customer, date_from=date(2025, 1, 1), date_to=date(2025, 1, 31)
    )
    rows |= {Product: item.product, Order: item.order, type(item): item, Report: report}
    # demo-shop: end
    return rows


def changelist(model: type[Model]) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def test_every_model_of_the_project_is_in_the_admin():
    models = [m for label in project_apps() for m in apps.get_app_config(label).get_models()]
    assert models, "no models found in app/"
    assert [m for m in models if not admin.site.is_registered(m)] == []


def test_every_list_page_renders_with_its_row(superuser_client, rows):
    for model, row in rows.items():
        response = superuser_client.get(changelist(model))
        assert response.status_code == 200, model
        shown = [obj.pk for obj in response.context["cl"].result_list]
        assert row.pk in shown, model
        page = superuser_client.get(
            reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[row.pk])
        )
        assert page.status_code == 200, model


def test_search_finds_only_the_matching_rows(superuser_client, rows):
    UserFactory(username="bob", email="bob@example.com")
    OutboxEmail.objects.create(
        key="order-confirmation:2", recipient="bob@example.com", subject="s", body="b"
    )
    searched: list[type[Model]] = [type(rows[ApiToken].user), OutboxEmail]
    searched += [Order, Report]  # demo-shop
    for model in searched:
        response = superuser_client.get(changelist(model), {"q": "ada"})
        assert response.status_code == 200, model
        found = list(response.context["cl"].result_list)
        assert [obj.pk for obj in found] == [rows[model].pk], model


def test_the_outbox_is_read_only(superuser_client, rows):
    assert superuser_client.get(reverse("admin:notifications_outboxemail_add")).status_code == 403


def _value(row: Model, path: str) -> object:
    for part in path.split("__"):
        row = getattr(row, part)
    return row


def test_every_list_page_searches_each_of_its_fields(superuser_client, rows):
    """Each field a list page says it searches finds the row by that field's value, and a term
    no row has finds none."""
    for model, row in rows.items():
        fields = admin.site.get_model_admin(model).search_fields
        assert fields, model
        for field in fields:
            value = _value(row, field.lstrip("=^@"))
            if value in ("", None):
                continue
            response = superuser_client.get(changelist(model), {"q": str(value)})
            assert response.status_code == 200, (model, field)
            assert row.pk in [obj.pk for obj in response.context["cl"].result_list], (model, field)
        nothing = superuser_client.get(changelist(model), {"q": "no-row-has-this-zq"})
        assert list(nothing.context["cl"].result_list) == [], model


def _lookups(query: str) -> dict[str, object]:
    """A filter link's query string as ORM lookups (isnull takes a boolean, not its text)."""
    params = dict(parse_qsl(query.lstrip("?")))
    return {
        key: (value == "True") if key.endswith("__isnull") else value
        for key, value in params.items()
    }


def test_every_filter_choice_shows_exactly_the_rows_its_lookup_names(superuser_client, rows):
    """Every list filter, every choice it offers (all, each value, each date range): the page
    shows the rows the ORM finds with the same lookup, never an invalid-filter redirect."""
    seen = 0
    for model in rows:
        model_admin = admin.site.get_model_admin(model)
        assert model_admin.list_filter, model
        first = superuser_client.get(changelist(model))
        for spec in first.context["cl"].filter_specs:
            for choice in spec.choices(first.context["cl"]):
                query = choice["query_string"]
                response = superuser_client.get(changelist(model) + query)
                assert response.status_code == 200, (model, query)
                shown = sorted(obj.pk for obj in response.context["cl"].result_list)
                expected = sorted(
                    model_admin.get_queryset(response.wsgi_request)
                    .filter(**_lookups(query))
                    .values_list("pk", flat=True)
                )
                assert shown == expected, (model, query)
                seen += 1
    assert seen > len(rows) * 2
