"""The admin on the real stack, through Nginx: a superuser made as the README says
(`manage.py createsuperuser`, here without prompts), every list page, and "Send again" mailing
a confirmation a second time through the outbox relay and the mail catcher."""

import re
import uuid

from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME

from tests.stack.test_attack_surface import admin_session
from tests.stack.test_background import (
    catcher,
    customer,
    expected_confirmations,
    place_order,
    product,
    wait_for_mail,
)

LIST_PAGES = (
    "accounts/user",
    "accounts/apitoken",
    "shop/product",
    "shop/order",
    "shop/orderitem",
    "reports/report",
    "notifications/outboxemail",
)


def superuser(stack) -> tuple[str, str]:
    username, password = f"root-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    stack.compose(
        "exec", "-T", "-e", f"DJANGO_SUPERUSER_PASSWORD={password}", "web",
        "python3", "manage.py", "createsuperuser", "--noinput",
        "--username", username, "--email", f"{username}@example.com",
    )  # fmt: skip
    return username, password


def test_a_superuser_sees_every_list_page_and_sends_a_confirmation_again(stack):
    headers, address, _ = customer(stack)
    order_id = place_order(stack, headers, product(stack))
    wait_for_mail(stack, address, expected_confirmations([order_id]), timeout=20)

    session = admin_session(stack, *superuser(stack))
    for page in LIST_PAGES:
        response = session.get(stack.url(f"/admin/{page}/"), timeout=10)
        assert response.status_code == 200, page

    email_id = stack.psql(
        "db-primary",
        f"SELECT id FROM notifications_outboxemail WHERE key = 'order-confirmation:{order_id}'",
    )
    outbox = stack.url("/admin/notifications/outboxemail/")
    listing = session.get(outbox, params={"q": address}, timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', listing.text)
    assert token, "no CSRF token on the outbox's list page"
    response = session.post(
        outbox,
        data={
            "csrfmiddlewaretoken": token.group(1),
            "action": "send_again",
            ACTION_CHECKBOX_NAME: email_id,
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text[:300]
    assert "1 email(s) queued to send again." in response.text

    wait_for_mail(stack, address, expected_confirmations([order_id, order_id]), timeout=20)
    first, second = (message["message_id"] for message in catcher(stack, address))
    assert first != second
