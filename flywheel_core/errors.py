"""The one error model: every error a user can act on is a `FlywheelError`.

The CLI prints a `FlywheelError` as one line (its message says what is wrong and what to do) and
shows the traceback only with `--debug`; anything else is a bug and keeps its traceback. Errors of
one domain subclass this base in their own module (labels, rasters, lake, imagery ...) and may
also subclass the built-in they have always been (`ValueError`, `RuntimeError`) so callers that
catch those keep working.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = [
    "FlywheelError",
    "StoreUnreachableError",
    "connection_failure",
    "one_line",
    "reaching",
    "unreachable",
]

_UNREACHABLE_MARKERS = (
    "connection refused",
    "could not connect",
    "could not translate host name",
    "connection timed out",
    "timed out",
    "name or service not known",
    "failed to establish a new connection",
    "could not resolve host",
    "no route to host",
    "connection reset",
    "unable to connect",
    "endpoint url",
)


class FlywheelError(Exception):
    """An error the user can fix; `str(error)` is a complete one-line explanation."""


class StoreUnreachableError(FlywheelError, ConnectionError):
    """The catalog, the object store or another service did not answer."""


def connection_failure(exc: BaseException) -> bool:
    """True when `exc` (or anything it was raised from) reads as a service that did not answer."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionError | TimeoutError):
            return True
        text = str(current).lower()
        if any(marker in text for marker in _UNREACHABLE_MARKERS):
            return True
        current = current.__cause__ or current.__context__
    return False


def _symptom(exc: BaseException) -> str:
    """The first known marker found in `exc`'s chain: a short reason that cannot leak a secret."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current).lower()
        for marker in _UNREACHABLE_MARKERS:
            if marker in text:
                return marker
        if isinstance(current, TimeoutError):
            return "timed out"
        current = current.__cause__ or current.__context__
    return "no answer"


def unreachable(what: str, exc: BaseException) -> StoreUnreachableError:
    """A `StoreUnreachableError` naming `what` (which must hold no secret) and the symptom.

    The service's own message is left out on purpose: drivers echo URLs and connection strings,
    and the traceback (with `--debug`) still has it.
    """
    return StoreUnreachableError(f"could not reach {what}: {_symptom(exc)}")


@contextlib.contextmanager
def reaching(what: str) -> Iterator[None]:
    """Turn a connection failure inside the block into `unreachable(what, ...)`; re-raise others.

    For the boundaries where a store is opened (a LanceDB URI, an S3 bucket): the user gets one
    line naming the store, not the driver's retry dump.
    """
    try:
        yield
    except FlywheelError:
        raise
    except Exception as exc:
        if connection_failure(exc):
            raise unreachable(what, exc) from exc
        raise


def one_line(exc: BaseException) -> str:
    """`str(exc)` on one line (whitespace runs collapsed), or the class name when it is empty."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
