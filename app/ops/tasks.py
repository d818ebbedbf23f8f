from celery import shared_task


@shared_task(name="ops.add")
def add(a: int, b: int) -> int:
    """The smallest real round trip through the broker, a worker and the result backend."""
    return a + b
