"""Table schemas declared once, as dataclasses: the Spark StructType is derived from the type hints.

A row type names each column, its Python type and whether it may be null (`X | None`), so the
code that builds rows and the table's schema cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import types
import typing
from typing import Annotated, Any

from pyspark.sql import types as T

Int32 = Annotated[int, T.IntegerType()]  # columns BI tools already read as 32-bit integers

_ATOMS = {str: T.StringType(), int: T.LongType(), float: T.DoubleType(), bool: T.BooleanType(),
          dt.datetime: T.TimestampType(), dt.date: T.DateType()}


def _spark_type(hint: Any) -> tuple[T.DataType, bool]:
    """(Spark type, nullable) for one type hint."""
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        inner = [a for a in args if a is not type(None)]
        return _spark_type(inner[0])[0], True
    if origin is Annotated:
        return args[1], False
    if origin is list:
        element, nullable = _spark_type(args[0])
        return T.ArrayType(element, nullable), False
    if origin is dict:
        value, nullable = _spark_type(args[1])
        return T.MapType(_spark_type(args[0])[0], value, nullable), False
    if dataclasses.is_dataclass(hint):
        return spark_schema(hint), False
    return _ATOMS[hint], False


def spark_schema(row_type: type) -> T.StructType:
    """The StructType of a dataclass row type, fields in declaration order."""
    hints = typing.get_type_hints(row_type, include_extras=True)
    fields = []
    for f in dataclasses.fields(row_type):
        data_type, nullable = _spark_type(hints[f.name])
        fields.append(T.StructField(f.name, data_type, nullable))
    return T.StructType(fields)


def row_values(row: Any) -> tuple:
    """A dataclass row as the tuple `createDataFrame(rows, spark_schema(type))` takes (a nested row as a
    tuple too). Not `dataclasses.asdict`: it deep-copies every value, a second per 15,000 drift rows."""
    return tuple(_value(getattr(row, f.name)) for f in dataclasses.fields(row))


def _value(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return row_values(value)
    if isinstance(value, list):
        return [_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _value(v) for k, v in value.items()}
    return value


def as_nullable(data_type: T.DataType) -> T.DataType:
    """The type with every field, element and value nullable, as Spark makes a table it creates from a
    DataFrame: a table created from a schema keeps its NOT NULLs, which a later row could break."""
    if isinstance(data_type, T.StructType):
        return T.StructType([T.StructField(f.name, as_nullable(f.dataType), True, f.metadata) for f in data_type.fields])
    if isinstance(data_type, T.ArrayType):
        return T.ArrayType(as_nullable(data_type.elementType), True)
    if isinstance(data_type, T.MapType):
        return T.MapType(as_nullable(data_type.keyType), as_nullable(data_type.valueType), True)
    return data_type


def arrow_type(data_type: T.DataType):
    """The Arrow type delta-rs writes for a Spark type (timestamps in UTC, as Spark stores them).
    A type without an Arrow twin here raises KeyError."""
    import pyarrow as pa

    if isinstance(data_type, T.StructType):
        return pa.struct([pa.field(f.name, arrow_type(f.dataType), f.nullable) for f in data_type.fields])
    if isinstance(data_type, T.ArrayType):
        return pa.list_(pa.field("element", arrow_type(data_type.elementType), data_type.containsNull))
    if isinstance(data_type, T.MapType):
        return pa.map_(arrow_type(data_type.keyType),
                       pa.field("value", arrow_type(data_type.valueType), data_type.valueContainsNull))
    atoms = {T.StringType: pa.string(), T.LongType: pa.int64(), T.IntegerType: pa.int32(),
             T.DoubleType: pa.float64(), T.BooleanType: pa.bool_(), T.TimestampType: pa.timestamp("us", tz="UTC"),
             T.DateType: pa.date32()}
    return atoms[type(data_type)]
