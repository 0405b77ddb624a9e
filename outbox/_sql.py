"""The SQL of the project, read from the `sql/` folder by name.

`sql/NNN_name.sql` are the migrations, `sql/queries.sql` holds every query,
each under a `-- name: NAME` header. Queries refer to the outbox schema as
`{schema}`; it is filled in once per schema as a quoted identifier, so values
are always bind parameters and no SQL is assembled from strings elsewhere.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

from psycopg import sql

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,49}$")
_MIGRATION_FILE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
_QUERY_HEADER = re.compile(r"^-- name: ([a-z_]+)\s*$", re.MULTILINE)

DEFAULT_SCHEMA = "outbox"


def sql_dir() -> Path:
    """The folder with the migrations: inside the package when installed from a
    wheel, else the repository's top-level `sql/`."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "sql", here.parent / "sql"):
        if (candidate / "queries.sql").is_file():
            return candidate
    raise FileNotFoundError(f"the outbox SQL files are missing (looked in {here / 'sql'} and {here.parent / 'sql'})")


def check_schema_name(schema: str) -> str:
    """Schema names are kept to plain lowercase identifiers, so the name is the
    same quoted or not and the NOTIFY channel derived from it is predictable."""
    if not isinstance(schema, str) or not _SCHEMA_NAME.match(schema):
        raise ValueError(
            f"schema: {schema!r} is not allowed; use lowercase letters, digits and _ "
            "(starting with a letter or _), at most 50 characters"
        )
    return schema


def notify_channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel that wakes the workers of one outbox schema."""
    return f"{schema}.events"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    text: str = field(repr=False)


@functools.cache
def migrations() -> tuple[Migration, ...]:
    found = []
    for path in sorted(sql_dir().iterdir()):
        match = _MIGRATION_FILE.match(path.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), path.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migration numbers must run 1, 2, 3, ... without gaps; found {versions}")
    return tuple(found)


@functools.cache
def raw_queries() -> dict[str, str]:
    text = (sql_dir() / "queries.sql").read_text(encoding="utf-8")
    parts = _QUERY_HEADER.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    result: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in result:
            raise RuntimeError(f"queries.sql: query {name!r} is defined twice")
        # Comment lines go: psycopg would count a %s written in a comment.
        lines = [line for line in body.splitlines() if not line.lstrip().startswith("--")]
        result[name] = "\n".join(lines).strip().rstrip(";")
    return result


@functools.cache
def query(name: str, schema: str) -> bytes:
    """The query `name` for `schema`, ready for `cursor.execute`.

    `{schema}` becomes the schema and `{channel}` its NOTIFY channel, both as quoted identifiers.
    """
    body = raw_queries()[name]
    composed = sql.SQL(body).format(
        schema=sql.Identifier(check_schema_name(schema)), channel=sql.Identifier(notify_channel(schema))
    )
    return composed.as_string(None).encode()
