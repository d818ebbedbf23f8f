"""Five ORM steps in fewer round trips, or less work, than Django's own, for a hot path.

one_or_none: the row a lookup on a unique key matches, or None, without the ORDER BY that
first() adds (compiling it, through every expression's hashed identity, costs more than the
rest of a one-row query's compilation).

insert_unless_exists: get_or_create in one statement. Django's is a SELECT, then a savepoint
around the INSERT (four round trips inside a transaction); this is one INSERT ... ON CONFLICT DO
NOTHING RETURNING, and only a conflict costs a second (the SELECT of the row that was there).

update_returning: update() and a read of the rows it changed, in one UPDATE ... RETURNING.

values_update: bulk_update in one UPDATE ... FROM (VALUES ...), one row of values per object,
where Django's builds a CASE over every object for each field (its compilation, on a busy write
path, costs more than the statement).

related_cache_fill: what prefetch_related would store for a relation, from rows the caller
already holds (the ones it just wrote), so reading the relation costs no query.

The writes take a model whose columns are all its own: no multi-table inheritance, no generated
column or database default (which Django's own writes leave to the database), an automatic
primary key. Anything else is refused (TypeError) rather than written wrong.
"""

from collections.abc import Iterable, Sequence
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import connections, transaction
from django.db.models import NOT_PROVIDED, Field, Model, QuerySet
from django.db.models.sql import UpdateQuery


def _plain_columns(model: type[Model], fields: Sequence[Any]) -> None:
    """Refuses what these one-statement writes would get wrong (the module's rule)."""
    meta = model._meta
    if meta.parents:
        raise TypeError(f"{meta.label}: multi-table inheritance")
    if not getattr(meta.pk, "db_returning", False):
        raise TypeError(f"{meta.label}: the primary key is not the database's to assign")
    for field in fields:
        if getattr(field, "generated", False) or field.db_default is not NOT_PROVIDED:
            raise TypeError(f"{meta.label}.{field.name}: written by the database, not here")


def one_or_none[M: Model](queryset: QuerySet[M]) -> M | None:
    """The one row `queryset` matches, or None; more than one raises MultipleObjectsReturned,
    as get() does: it is for lookups a unique constraint answers, where order means nothing."""
    return _at_most_one(queryset, list(queryset.order_by()[:2]))


async def aone_or_none[M: Model](queryset: QuerySet[M]) -> M | None:
    """one_or_none, awaited."""
    return _at_most_one(queryset, [row async for row in queryset.order_by()[:2]])


def _at_most_one[M: Model](queryset: QuerySet[M], rows: list[M]) -> M | None:
    if len(rows) > 1:
        model: Any = queryset.model
        raise model.MultipleObjectsReturned(
            f"{model._meta.label}: more than one row for a lookup meant to be unique"
        )
    return rows[0] if rows else None


def insert_unless_exists[M: Model](instance: M, *, unique_field: str, using: str) -> tuple[M, bool]:
    """Inserts `instance` unless a row with its `unique_field` value exists: (the row, created).

    As save() would insert it: each field's pre_save (auto_now_add) and database preparation.
    A concurrent insert of the same value waits on the other transaction, as with
    get_or_create's savepoint, and never raises: the row that won is returned.
    """
    meta = instance._meta
    connection = connections[using]
    fields = [field for field in meta.concrete_fields if not field.primary_key]
    _plain_columns(type(instance), fields)
    values = [
        field.get_db_prep_save(field.pre_save(instance, add=True), connection) for field in fields
    ]
    quote = connection.ops.quote_name
    unique = meta.get_field(unique_field)
    if not isinstance(unique, Field) or meta.pk is None:
        raise TypeError(f"{unique_field} is not a column of {meta.label}")
    # Every name is the model's own, quoted; the values are parameters.
    columns = ", ".join(quote(field.column) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({placeholders})"  # noqa: S608
        f" ON CONFLICT ({quote(unique.column)}) DO NOTHING RETURNING {quote(meta.pk.column)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        row = cursor.fetchone()
    if row is None:
        existing = (
            type(instance)
            ._default_manager.using(using)
            .get(**{unique_field: getattr(instance, unique.attname)})
        )
        return existing, False
    instance.pk = row[0]
    instance._state.adding = False
    instance._state.db = using
    return instance, True


def update_returning[M: Model](queryset: QuerySet[M], *, using: str, **values: Any) -> list[M]:
    """queryset.update(**values), returning the rows it changed as they are now. The filter
    must stay on the model's own table (no join), the form Django compiles as one UPDATE."""
    meta = queryset.model._meta
    fields: list[Any] = list(meta.concrete_fields)
    _plain_columns(queryset.model, [meta.get_field(name) for name in values])
    query: Any = queryset.query.chain(UpdateQuery)
    query.add_update_values(values)
    query.clear_select_clause()
    if query.related_updates or query.count_active_tables() > 1:
        raise ValueError("update_returning: a filter or a field outside the model's own table")
    connection = connections[using]
    try:
        sql, params = query.get_compiler(using).as_sql()
    except EmptyResultSet:  # a filter nothing can match (pk__in=[]): update() changes nothing
        return []
    quote = connection.ops.quote_name
    sql += " RETURNING " + ", ".join(quote(field.column) for field in fields)
    # As update(): an error inside an atomic block marks it for rollback.
    with transaction.mark_for_rollback_on_error(using=using), connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    # (column index, converter, column): what Django applies to each value it reads.
    converters = [
        (index, convert, field.get_col(meta.db_table))
        for index, field in enumerate(fields)
        for convert in field.get_db_converters(connection)
    ]
    names = [field.attname for field in fields]
    changed = []
    for row in rows:
        read = list(row)
        for index, convert, column in converters:
            read[index] = convert(read[index], column, connection)
        changed.append(queryset.model.from_db(using, names, read))
    return changed


def values_update(objects: Sequence[Model], *, fields: Sequence[str], using: str) -> None:
    """Writes `fields` of each object to its row (by primary key), as bulk_update would."""
    if not objects:
        return
    meta = objects[0]._meta
    if not fields:
        raise ValueError("values_update: no field to write")
    if len({obj.pk for obj in objects}) < len(objects):
        raise ValueError("values_update: an object listed twice (which values would win?)")
    connection = connections[using]
    quote = connection.ops.quote_name
    targets: list[Any] = [meta.get_field(name) for name in fields]
    _plain_columns(type(objects[0]), targets)
    key: Any = meta.pk
    columns = [key, *targets]
    # Typed placeholders: a VALUES list takes its column types from its rows, and a NULL or a
    # small integer would otherwise be guessed.
    row = "(" + ", ".join(f"%s::{column.cast_db_type(connection)}" for column in columns) + ")"
    params = [
        column.get_db_prep_save(getattr(obj, column.attname), connection)
        for obj in objects
        for column in columns
    ]
    table = quote(meta.db_table)
    names = ", ".join(quote(column.column) for column in columns)
    assignments = ", ".join(f"{quote(f.column)} = v.{quote(f.column)}" for f in targets)
    sql = (
        f"UPDATE {table} SET {assignments} FROM (VALUES {', '.join([row] * len(objects))})"  # noqa: S608
        f" AS v ({names}) WHERE {table}.{quote(key.column)} = v.{quote(key.column)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def related_cache_fill(instance: Model, *, relation: str, objects: Iterable[Model]) -> None:
    """`instance.<relation>.all()` answers `objects` from now on, without a query: the
    queryset Django's prefetch_one_level stores for a prefetched relation, filled here."""
    manager: Any = getattr(instance, relation)
    queryset: Any = manager.get_queryset()
    queryset._result_cache = list(objects)
    queryset._prefetch_done = True
    cache: dict[str, Any] = instance.__dict__.setdefault("_prefetched_objects_cache", {})
    # The name the manager reads its prefetched rows under: a many-to-many manager's own, a
    # reverse foreign key's the relation's.
    name = getattr(manager, "prefetch_cache_name", None) or manager.field.remote_field.cache_name
    cache[name] = queryset
