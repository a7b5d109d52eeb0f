"""Database errors translated at the boundary into the package's own errors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg
from psycopg import errors as pg

from iam_cluster.errors import IAMError


class DatabaseError(IAMError):
    """The database could not complete the request."""

    code = "database"


class DatabaseUnavailable(DatabaseError):
    """The database cannot be reached."""

    code = "database_unavailable"


class ConstraintError(IAMError):
    """A constraint of the schema refused the record."""

    def __init__(self, message: str | None = None, constraint: str | None = None) -> None:
        #: The violated constraint or unique index, when PostgreSQL names it.
        self.constraint = constraint
        super().__init__(message)


class Conflict(ConstraintError):
    """The record conflicts with an existing one."""

    code = "conflict"


class NotFound(IAMError):
    """Not found."""

    code = "not_found"


class InvalidReference(ConstraintError, NotFound):
    """The record refers to something that does not exist."""

    code = "invalid_reference"


class InvalidValue(IAMError):
    """A value breaks a rule of the schema."""

    code = "invalid_value"

    def __init__(self, message: str | None = None, constraint: str | None = None) -> None:
        self.constraint = constraint
        super().__init__(message)


def translate(exc: psycopg.Error) -> IAMError:
    """The package error for a driver error (``DatabaseError`` when no finer one fits)."""
    constraint = getattr(exc.diag, "constraint_name", None) if hasattr(exc, "diag") else None
    detail = getattr(exc.diag, "message_detail", None) if hasattr(exc, "diag") else None
    if isinstance(exc, pg.UniqueViolation):
        return Conflict(detail or None, constraint=constraint)
    if isinstance(exc, pg.ForeignKeyViolation):
        return InvalidReference(detail or None, constraint=constraint)
    if isinstance(exc, (pg.CheckViolation, pg.NotNullViolation)):
        return InvalidValue(detail or str(exc).strip() or None, constraint=constraint)
    if isinstance(exc, psycopg.OperationalError):
        return DatabaseUnavailable(str(exc).strip() or None)
    return DatabaseError(str(exc).strip() or None)


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """Re-raise driver errors raised inside the block as package errors (works around ``await`` too).

    Example:
        with translate_errors():
            await conn.execute(QUERIES["insert_user"], params)
    """
    try:
        yield
    except psycopg.Error as exc:
        raise translate(exc) from exc
