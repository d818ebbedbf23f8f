"""The primary streams to the replica; the roles hold only the privileges they need."""


def test_replica_streams_from_the_primary(stack):
    state = stack.psql("db-primary", "SELECT state FROM pg_stat_replication")
    assert state == "streaming"
    assert stack.psql("db-replica", "SELECT pg_is_in_recovery()") == "t"


def test_the_replica_refuses_writes(stack):
    result = stack.compose(
        "exec",
        "-T",
        "db-replica",
        "psql",
        "-U",
        "postgres",
        "-d",
        "app",
        "-XAtq",
        "-c",
        "CREATE TABLE nope (id int)",
        check=False,
    )
    assert result.returncode != 0
    assert "read-only transaction" in result.stderr


def test_app_role_is_not_privileged_and_replication_role_only_replicates(stack):
    app = stack.psql(
        "db-primary",
        "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication FROM pg_roles "
        "WHERE rolname = 'app'",
    )
    assert app == "f|f|f|f"
    replicator = stack.psql(
        "db-primary",
        "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication FROM pg_roles "
        "WHERE rolname = 'replicator'",
    )
    assert replicator == "f|f|f|t"
    assert stack.psql("db-primary", "SELECT rolconfig FROM pg_roles WHERE rolname = 'app'") == (
        "{statement_timeout=15s}"
    )
