import factory
from django.contrib.auth import get_user_model

from accounts.models import User
from accounts.services import api_token_create


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()

    username = factory.Sequence(lambda n: f"customer{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("correct horse battery staple")


def bearer(user: User) -> dict[str, str]:
    token, _ = api_token_create(user=user)
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}
