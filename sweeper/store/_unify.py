"""Concatenate part tables whose schemas differ.

Parts of one dataset carry different ``param.*``/``metric.*`` columns, and a column can be
int64 in one part and float64 in another, or even a number in one and a string in another.
Arrow's permissive promotion handles the first cases; a column it cannot merge becomes
string (values cast to text), so a read never fails because of a type clash.
"""

from __future__ import annotations

import array
from collections.abc import Iterable

import pyarrow as pa

# pyarrow.compute is imported where it is used: it builds its kernel wrappers at import
# (~30 ms), which a plain read of same-schema parts (`sweep ls`) does not need.


def int64_array(values: Iterable[int]) -> pa.Array:
    """Python ints as an Arrow int64 array, built from a buffer.

    pyarrow imports pandas (~0.5 s) to convert a Python list or a NumPy array, which a
    command that only reads the store should not pay.
    """
    data = array.array("q", values)
    return pa.Array.from_buffers(pa.int64(), len(data), [None, pa.py_buffer(data)])


def _field_type(types: list[pa.DataType]) -> pa.DataType:
    unique: list[pa.DataType] = []
    for t in types:
        if t not in unique:
            unique.append(t)
    if len(unique) == 1:
        return unique[0]
    try:
        schema = pa.unify_schemas(
            [pa.schema([("x", t)]) for t in unique], promote_options="permissive"
        )
        return schema.field("x").type
    except (pa.ArrowTypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.string()


def _cast_column(column: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    if column.type == target:
        return column
    if pa.types.is_null(column.type):
        return pa.chunked_array([pa.nulls(len(column), target)], type=target)
    import pyarrow.compute as pc

    try:
        return pc.cast(column, target, safe=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        if pa.types.is_string(target):
            as_text = [None if v is None else str(v) for v in column.to_pylist()]
            return pa.chunked_array([pa.array(as_text, type=pa.string())], type=target)
        raise


def unify_schema(schemas: list[pa.Schema]) -> pa.Schema:
    """One schema holding every field, in first-seen order, each with a type all can cast to."""
    order: list[str] = []
    types: dict[str, list[pa.DataType]] = {}
    for schema in schemas:
        for field in schema:
            if field.name not in types:
                order.append(field.name)
                types[field.name] = []
            types[field.name].append(field.type)
    return pa.schema([(name, _field_type(types[name])) for name in order])


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """The table with exactly ``schema``'s columns: missing ones as nulls, others cast."""
    columns = []
    for field in schema:
        index = table.schema.get_field_index(field.name)
        if index < 0:
            columns.append(pa.chunked_array([pa.nulls(table.num_rows, field.type)], field.type))
        else:
            columns.append(_cast_column(table.column(index), field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def concat(tables: list[pa.Table], base: pa.Schema | None = None) -> pa.Table:
    """All rows of ``tables`` in order under one unified schema (``base`` columns first)."""
    tables = [t.replace_schema_metadata(None) for t in tables]
    # Parts written by the same code mostly share a schema: concatenate each group cheaply,
    # conform the groups, then restore the original row order.
    groups: dict[pa.Schema, list[int]] = {}
    for index, table in enumerate(tables):
        groups.setdefault(table.schema, []).append(index)
    schemas = list(groups)
    schema = unify_schema(([base] if base is not None else []) + schemas)
    if len(groups) == 1:
        merged = pa.concat_tables(tables)
        return merged if merged.schema.equals(schema) else conform(merged, schema)
    parts = []
    for indexes in groups.values():
        group = pa.concat_tables([tables[i] for i in indexes])
        order = int64_array(i for i in indexes for _ in range(tables[i].num_rows))
        parts.append(conform(group, schema).append_column(_ORDER, order))
    import pyarrow.compute as pc

    result = pa.concat_tables(parts)
    result = result.take(pc.sort_indices(result, [(_ORDER, "ascending")]))
    return result.drop_columns([_ORDER])


_ORDER = "__sweeper_part_order"
