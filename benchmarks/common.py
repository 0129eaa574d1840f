"""What the benchmarks share: a scratch PostgreSQL database of their own, dropped afterwards."""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit


def scratch_database(url: str, suffix: str = "") -> tuple[str, str]:
    """A new, empty database on the same server; (its URL, its name)."""
    import psycopg

    name = f"hub_bench_{os.getpid()}{suffix}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}".encode())
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}")), name


def drop_database(url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())
