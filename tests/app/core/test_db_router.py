"""Which alias the router picks, without a database: the hints alone decide."""

from accounts.models import ApiToken
from core.db_router import PRIMARY, REPLICA, PrimaryReplicaRouter
from notifications.models import OutboxEmail


def test_plain_reads_go_to_the_replica():
    assert PrimaryReplicaRouter().db_for_read(OutboxEmail) == REPLICA


def test_reads_of_the_primary_only_apps_stay_on_the_primary():
    assert PrimaryReplicaRouter().db_for_read(ApiToken) == PRIMARY


def test_related_reads_of_an_object_from_the_primary_stay_on_the_primary():
    email = OutboxEmail()
    email._state.db = PRIMARY
    assert PrimaryReplicaRouter().db_for_read(OutboxEmail, instance=email) == PRIMARY


def test_related_reads_of_an_object_from_the_replica_stay_on_the_replica():
    email = OutboxEmail()
    email._state.db = REPLICA
    assert PrimaryReplicaRouter().db_for_read(OutboxEmail, instance=email) == REPLICA
