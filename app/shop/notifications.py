"""The shop's emails. The shop composes them; the outbox (notifications) stores and sends them."""

from notifications.models import OutboxEmail
from notifications.services import outbox_email_create
from shop.models import Order


def order_confirmation_create(*, order: Order) -> OutboxEmail | None:
    """The order confirmation, in the order's transaction. None: the customer has no address."""
    customer = order.customer
    if not customer.email:
        return None
    # The lines as placed: order_create fills them in from the rows it wrote (no query).
    items = order.items.all()
    lines = [f"  {item.quantity} x {item.product_name} at {item.unit_price}" for item in items]
    body = "\n".join(
        [
            f"Hello {customer.get_username()},",
            "",
            f"thank you for your order {order.pk}:",
            *lines,
            f"Total: {order.total}",
        ]
    )
    return outbox_email_create(
        key=f"order-confirmation:{order.pk}",
        to=customer.email,
        subject=f"Your order {order.pk} is confirmed",
        body=body,
    )
