"""The example database: where campaigns keep the examples Hypothesis found,
so a divergence found once is tried first by every later run.

Every provider runs the same state machine, so Hypothesis gives all of them
one database key; and Hypothesis deletes a stored example that no longer
fails. One shared place for all providers would let a run on ``sim`` throw
away the divergence a run on ``mutant:NAME`` found. So each provider and
model configuration has a place of its own: a folder
``<database>/<provider>-<config digest>`` (by default under
``$SANSPI_CACHE/hypothesis``, sanspi/cache.py), or, in a shared Redis, keys
prefixed ``sanspi:<provider>-<config digest>:`` (Hypothesis's own
``RedisExampleDatabase``), so several machines share what each found.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import attrs
from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase

from sanspi.cache import cache_root
from sanspi.model.state import Config


class DatabaseError(Exception):
    """The database named cannot be used: one line for the user."""


def default_location() -> Path:
    return cache_root() / "hypothesis"


def namespace(provider: str, cfg: Config) -> str:
    """``provider`` made safe for a file name, with a digest of the model's
    configuration: a failure found with 4 pages is not one with 8."""
    fields = repr(attrs.astuple(cfg)).encode()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", provider).strip("_")[:80] or "provider"
    return f"{slug}-{hashlib.sha256(fields).hexdigest()[:8]}"


def is_redis(location: str | None) -> bool:
    return bool(location) and location.startswith(("redis://", "rediss://", "unix://"))


def open_database(location: str | None, provider: str, cfg: Config) -> ExampleDatabase:
    """The database for ``provider`` under ``cfg``. ``location``: None (the
    default folder), a folder, or a Redis URL (redis://HOST:PORT/DB)."""
    space = namespace(provider, cfg)
    if not is_redis(location):
        return DirectoryBasedExampleDatabase(str(Path(location or default_location()).expanduser() / space))
    try:
        import redis
        from hypothesis.extra.redis import RedisExampleDatabase
    except ImportError:
        raise DatabaseError(f"{location}: a Redis database needs the redis package "
                            f"(pip install 'sanspi[fuzz]'; make venv installs it)") from None
    try:
        client = redis.Redis.from_url(location)
        client.ping()
    except ValueError as exc:
        raise DatabaseError(f"{location} is not a Redis URL ({exc}); use redis://HOST:PORT/DB") from None
    except redis.RedisError as exc:
        raise DatabaseError(f"cannot reach Redis at {location}: {exc}") from None
    return RedisExampleDatabase(client, key_prefix=f"sanspi:{space}:".encode(), listener_channel=f"sanspi:{space}")


def describe(location: str | None, provider: str, cfg: Config) -> str:
    """Where ``open_database(location, provider, cfg)`` keeps its examples, for a report."""
    space = namespace(provider, cfg)
    if is_redis(location):
        return f"{location} (keys sanspi:{space}:*)"
    return str(Path(location or default_location()).expanduser() / space)
