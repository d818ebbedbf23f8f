"""NetworkPolicies: everything denied, then exactly the paths the stack uses.

A small evaluator of the NetworkPolicy semantics: a connection is allowed when the sender's
egress and the receiver's ingress both allow it. A pod selected by no policy of a direction is
open in that direction, so the default deny must select every pod.
"""

import ipaddress
from dataclasses import dataclass, field

import pytest
import yaml

from tests.k8s.manifests import (
    NAMESPACE,
    ROOT,
    STAND_INS,  # demo-shop
    Doc,
    Manifests,
    labels_match,
)

DJANGO = ("web", "worker", "beat", "migrate")


@dataclass(frozen=True)
class Peer:
    """A pod of the stack (by its template labels) or something outside the namespace: a pod of
    another namespace (`namespace`: that namespace's labels) or an address outside the cluster
    (`ip`; None stands for any address, as a rule that must hold for every one)."""

    labels: dict[str, str] = field(default_factory=dict)
    in_namespace: bool = True
    namespace: dict[str, str] | None = None
    ip: str | None = None


def other_namespace(name: str, **labels: str) -> Peer:
    return Peer(labels, in_namespace=False, namespace={"kubernetes.io/metadata.name": name})


OUTSIDE = Peer(in_namespace=False)  # the internet, kube-dns, a managed DB: any address
INGRESS_CONTROLLER = other_namespace("ingress-nginx", **{"app.kubernetes.io/name": "ingress-nginx"})
# Any in-cluster client that is not the ingress controller: it must not reach Nginx, which
# trusts X-Forwarded-Proto.
OTHER_POD = other_namespace("team-b", app="anything")
# Addresses web must not reach in production: the private range the placeholder used to open.
ARBITRARY_PRIVATE = [Peer(in_namespace=False, ip=ip) for ip in ("10.0.0.5", "10.96.0.10")]


def ip_in_block(block: Doc, ip: str | None) -> bool:
    if ip is None:
        return True
    address = ipaddress.ip_address(ip)
    if address not in ipaddress.ip_network(block["cidr"]):
        return False
    return not any(address in ipaddress.ip_network(cidr) for cidr in block.get("except") or [])


def namespace_matches(selector: Doc, peer: Peer) -> bool:
    if peer.in_namespace:
        return labels_match(selector, {"kubernetes.io/metadata.name": NAMESPACE})
    if peer.namespace is None:
        return selector == {}
    return labels_match(selector, peer.namespace)


def peer_matches(rule_peers: list[Doc] | None, peer: Peer) -> bool:
    if not rule_peers:  # no from/to: any peer
        return True
    for item in rule_peers:
        if "ipBlock" in item:
            if (
                not peer.in_namespace
                and peer.namespace is None
                and ip_in_block(item["ipBlock"], peer.ip)
            ):
                return True
            continue
        if "namespaceSelector" in item:
            if namespace_matches(item["namespaceSelector"], peer) and labels_match(
                item.get("podSelector") or {}, peer.labels
            ):
                return True
            continue
        if peer.in_namespace and labels_match(item["podSelector"], peer.labels):
            return True
    return False


def port_matches(ports: list[Doc] | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    return any(
        p.get("protocol", "TCP") == protocol and p.get("port") in (None, port) for p in ports
    )


def direction_allows(
    manifests: Manifests, direction: str, pod: Peer, other: Peer, port: int, protocol: str
) -> bool:
    """Whether `pod` may send (Egress) to or receive (Ingress) from `other` on the port."""
    if not pod.in_namespace:
        return True  # not ours to restrict
    policies = [
        p
        for p in manifests.of_kind("NetworkPolicy")
        if direction in p["spec"].get("policyTypes", ["Ingress"])
        and labels_match(p["spec"]["podSelector"], pod.labels)
    ]
    if not policies:
        return True
    key, peers = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    return any(
        peer_matches(rule.get(peers), other) and port_matches(rule.get("ports"), port, protocol)
        for policy in policies
        for rule in policy["spec"].get(key) or []
    )


def allowed(
    manifests: Manifests, source: Peer, target: Peer, port: int, protocol: str = "TCP"
) -> bool:
    return direction_allows(
        manifests, "Egress", source, target, port, protocol
    ) and direction_allows(manifests, "Ingress", target, source, port, protocol)


def pods(manifests: Manifests, component: str) -> Peer:
    return Peer(manifests.pods_labelled(component))


ALLOWED = [
    ("nginx", "web", 8000),
    *[(client, "pgbouncer", 6432) for client in DJANGO],
    *[(client, "redis", 6379) for client in DJANGO],
    *[(client, "redis-cache", 6379) for client in DJANGO],
    ("pgbouncer", "db-primary", 5432),
    ("pgbouncer", "db-replica", 5432),
    ("db-replica", "db-primary", 5432),
    # The database exporters (components/monitoring): what they watch.
    ("exporter", "db-primary", 5432),
    ("exporter", "db-replica", 5432),
    ("exporter", "pgbouncer", 6432),
]
DENIED = [
    ("exporter", "redis", 6379),
    ("exporter", "web", 8000),
    ("web", "exporter", 9187),
    ("nginx", "exporter", 9127),
    ("nginx", "pgbouncer", 6432),
    ("nginx", "redis", 6379),
    ("nginx", "redis-cache", 6379),
    ("nginx", "db-primary", 5432),
    *[(client, "db-primary", 5432) for client in DJANGO],
    *[(client, "db-replica", 5432) for client in DJANGO],
    ("worker", "web", 8000),
    ("web", "nginx", 8080),
    ("pgbouncer", "redis", 6379),
    ("redis", "pgbouncer", 6432),
    ("db-primary", "db-replica", 5432),
    ("db-primary", "pgbouncer", 6432),
    ("redis", "web", 8000),
    ("pgbouncer", "redis-cache", 6379),
    ("redis-cache", "redis", 6379),
    ("redis", "redis-cache", 6379),
    ("redis-cache", "pgbouncer", 6432),
]


# demo-shop: begin
# The upstream stand-ins (local overlay only): web calls them; nothing else reaches them, and
# they reach nothing of the stack.
STAND_IN_ALLOWED = [("web", stand_in, 8080) for stand_in in STAND_INS]
STAND_IN_DENIED = [
    *[
        (client, stand_in, 8080)
        for stand_in in STAND_INS
        for client in ("nginx", "worker", "beat", "migrate", "pgbouncer", "redis", "db-primary")
    ],
    ("price", "recommendations", 8080),
    ("recommendations", "price", 8080),
    *[(stand_in, "web", 8000) for stand_in in STAND_INS],
    *[(stand_in, "nginx", 8080) for stand_in in STAND_INS],
    *[(stand_in, "pgbouncer", 6432) for stand_in in STAND_INS],
    *[(stand_in, "redis", 6379) for stand_in in STAND_INS],
    *[(stand_in, "redis-cache", 6379) for stand_in in STAND_INS],
    *[(stand_in, "db-primary", 5432) for stand_in in STAND_INS],
    *[(stand_in, "db-replica", 5432) for stand_in in STAND_INS],
    ("web", "price", 8000),
]
LOCAL = ("k8s", "local")
# demo-shop: end


def test_everything_is_denied_by_default(deployment: Manifests) -> None:
    deny = deployment.get("NetworkPolicy", "default-deny-all")["spec"]
    assert deny["podSelector"] == {}
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert not deny.get("ingress")
    assert not deny.get("egress")


@pytest.mark.parametrize(("source", "target", "port"), ALLOWED)
def test_the_stacks_paths_are_allowed(
    deployment: Manifests, source: str, target: str, port: int
) -> None:
    assert allowed(deployment, pods(deployment, source), pods(deployment, target), port)


@pytest.mark.parametrize(("source", "target", "port"), DENIED)
def test_every_other_path_is_denied(
    deployment: Manifests, source: str, target: str, port: int
) -> None:
    assert not allowed(deployment, pods(deployment, source), pods(deployment, target), port)


def test_only_nginx_is_reachable_from_outside(deployment: Manifests) -> None:
    assert allowed(deployment, INGRESS_CONTROLLER, pods(deployment, "nginx"), 8080)
    for component, port in [
        ("web", 8000),
        ("pgbouncer", 6432),
        ("redis", 6379),
        ("redis-cache", 6379),
        ("db-primary", 5432),
        ("db-replica", 5432),
    ]:
        assert not allowed(deployment, OUTSIDE, pods(deployment, component), port), component
        assert not allowed(deployment, INGRESS_CONTROLLER, pods(deployment, component), port)


def test_nginx_admits_only_the_ingress_controllers_namespace(deployment: Manifests) -> None:
    """Nginx passes X-Forwarded-Proto on (NGINX_TRUST_FORWARDED_PROTO=true): a pod of another
    namespace, or any address, reaching it could claim https."""
    assert deployment.config["NGINX_TRUST_FORWARDED_PROTO"] == "true"
    nginx = pods(deployment, "nginx")
    assert allowed(deployment, INGRESS_CONTROLLER, nginx, 8080)
    assert not allowed(deployment, OTHER_POD, nginx, 8080)
    assert not allowed(deployment, OUTSIDE, nginx, 8080)
    # Selected by namespace alone: any of the controller's pods, whatever their labels.
    assert allowed(deployment, other_namespace("ingress-nginx", app="x"), nginx, 8080)


def test_nginx_trusts_client_addresses_only_from_the_pods_that_can_reach_it(
    deployment: Manifests,
) -> None:
    """Rate limits count the address in X-Forwarded-For from NGINX_REAL_IP_FROM's range (the pod
    range, where the ingress controller runs): only the controller can reach Nginx, so no other
    client can claim an address. Compose trusts no proxy: its Nginx is the edge."""
    trusted = deployment.config["NGINX_REAL_IP_FROM"]
    assert trusted
    assert all(ipaddress.ip_network(part) for part in trusted.split(","))
    (nginx,) = [c for c in deployment.containers() if c.workload == "nginx" and not c.init]
    env = {e["name"]: e for e in nginx.spec["env"]}
    assert env["NGINX_REAL_IP_FROM"]["valueFrom"]["configMapKeyRef"]["key"] == "NGINX_REAL_IP_FROM"
    assert allowed(deployment, INGRESS_CONTROLLER, pods(deployment, "nginx"), 8080)
    assert not allowed(deployment, OTHER_POD, pods(deployment, "nginx"), 8080)
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert compose["services"]["nginx"]["environment"]["NGINX_REAL_IP_FROM"].endswith(":-}")
    assert "\nNGINX_REAL_IP_FROM=\n" in (ROOT / ".env.example").read_text()


def test_every_pod_resolves_names_and_reaches_nothing_else_outside(
    deployment: Manifests,
) -> None:
    components = {
        doc["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
        for doc in deployment.workloads
    }
    for component in components:
        pod = pods(deployment, component)
        assert allowed(deployment, pod, OUTSIDE, 53, "UDP"), component
        assert allowed(deployment, pod, OUTSIDE, 53, "TCP"), component
        assert not allowed(deployment, pod, OUTSIDE, 443), component
        assert not allowed(deployment, pod, OUTSIDE, 5432), component


# demo-shop: begin
@pytest.mark.parametrize("variant", LOCAL)
@pytest.mark.parametrize(("source", "target", "port"), STAND_IN_ALLOWED)
def test_web_reaches_the_stand_ins(
    rendered, variant: str, source: str, target: str, port: int
) -> None:
    local = rendered(variant)
    assert allowed(local, pods(local, source), pods(local, target), port)


@pytest.mark.parametrize("variant", LOCAL)
@pytest.mark.parametrize(("source", "target", "port"), STAND_IN_DENIED)
def test_nothing_else_reaches_or_is_reached_by_the_stand_ins(
    rendered, variant: str, source: str, target: str, port: int
) -> None:
    local = rendered(variant)
    assert not allowed(local, pods(local, source), pods(local, target), port)


@pytest.mark.parametrize("variant", LOCAL)
def test_the_stand_ins_are_not_reachable_from_outside(rendered, variant: str) -> None:
    local = rendered(variant)
    for stand_in in STAND_INS:
        assert not allowed(local, OUTSIDE, pods(local, stand_in), 8080), stand_in
    # Web's way out stays the stand-ins: no address outside the namespace on their port.
    assert not allowed(local, pods(local, "web"), OUTSIDE, 8080)


# shop-upstream-egress.yaml's placeholders, one per service.
UPSTREAMS = [Peer(in_namespace=False, ip=ip) for ip in ("192.0.2.10", "192.0.2.11")]


@pytest.mark.parametrize("variant", ["production", "production-managed"])
def test_production_web_alone_reaches_the_real_upstream_services(rendered, variant: str) -> None:
    production = rendered(variant)
    # shop-upstream-egress.yaml: web out to the services' addresses on their port.
    for upstream in UPSTREAMS:
        assert allowed(production, pods(production, "web"), upstream, 8080), upstream.ip
        for component in ("nginx", "worker", "beat", "migrate", "pgbouncer"):
            assert not allowed(production, pods(production, component), upstream, 8080), component
        assert not allowed(production, pods(production, "web"), upstream, 443)


@pytest.mark.parametrize("variant", ["production", "production-managed"])
def test_production_web_reaches_no_other_private_address(rendered, variant: str) -> None:
    production = rendered(variant)
    web = pods(production, "web")
    for address in ARBITRARY_PRIVATE:
        assert not allowed(production, web, address, 8080), address.ip
    for rule in production.get("NetworkPolicy", "web-upstream-egress")["spec"]["egress"]:
        for peer in rule["to"]:
            if "ipBlock" in peer:
                # One host per upstream service, or a range the README tells the user to narrow.
                assert ipaddress.ip_network(peer["ipBlock"]["cidr"]).prefixlen >= 24, peer


# demo-shop: end


def test_managed_services_are_reached_only_by_their_clients(rendered) -> None:
    managed = rendered("production-managed")
    assert allowed(managed, pods(managed, "pgbouncer"), OUTSIDE, 5432)
    assert not allowed(managed, pods(managed, "web"), OUTSIDE, 5432)
    for client in DJANGO:
        assert allowed(managed, pods(managed, client), OUTSIDE, 6379), client
    assert not allowed(managed, pods(managed, "nginx"), OUTSIDE, 6379)
