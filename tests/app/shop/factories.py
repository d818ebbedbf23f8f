from decimal import Decimal

import factory

from shop.models import Product


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    name = factory.Sequence(lambda n: f"Product {n}")
    description = factory.Faker("sentence")
    price = factory.LazyFunction(lambda: Decimal("9.99"))
    stock = 10
