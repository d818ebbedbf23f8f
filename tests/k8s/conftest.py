"""Each rendering of k8s/ is made once per session and shared by every test that needs it."""

from pathlib import Path

import pytest

from tests.k8s.manifests import DEPLOYMENTS, VARIANTS, Manifests, render


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory):
    cache: dict[str, Manifests] = {}

    def get(variant: str) -> Manifests:
        if variant not in cache:
            workdir: Path = tmp_path_factory.mktemp(variant)
            cache[variant] = Manifests(variant, render(variant, workdir))
        return cache[variant]

    return get


@pytest.fixture(scope="session", params=VARIANTS)
def any_variant(request: pytest.FixtureRequest, rendered) -> Manifests:
    """Every rendering, managed-service components included."""
    return rendered(request.param)


@pytest.fixture(scope="session", params=DEPLOYMENTS)
def deployment(request: pytest.FixtureRequest, rendered) -> Manifests:
    """`kubectl apply -k k8s/`, the local and the production overlay as committed."""
    return rendered(request.param)
