"""The value parsers of the settings table (skewless/settings_table.py): text -> value.

A parser raises ValueError with what the variable expects (without its name);
``Setting.parse_text`` adds the name. Nothing here imports a heavy library.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit


def path(text: str) -> Path:
    return Path(text).expanduser().resolve()


def number(low: float | None = None, high: float | None = None, what: str = "a number"):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if (
            value != value
            or (low is not None and value < low)
            or (high is not None and value > high)
        ):
            raise ValueError(what)
        return value

    return parse


def integer(low: int, what: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(what) from None
        if value < low:
            raise ValueError(what)
        return value

    return parse


def boolean(text: str) -> bool:
    # The sidecar parses SKEWLESS_* values as JSON: "False" would stay a (truthy) string there.
    lowered = text.strip()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise ValueError("true or false")


def text(text: str) -> str:
    return text


def choice(*options: str):
    def parse(text: str) -> str:
        if text not in options:
            raise ValueError("one of " + ", ".join(options))
        return text

    return parse


def port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError("a port number, e.g. 5432")
    return int(text)


def redis_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError("a URL redis://[:password@]host:port/db or rediss://… (TLS)")
    try:
        parts.port  # noqa: B018 - raises on a non-numeric port
        db = parts.path.lstrip("/") or "0"
        int(db)
    except ValueError:
        raise ValueError(
            "a URL redis://[:password@]host:port/db with a numeric port and db"
        ) from None
    return text


# MLflow's tracking stores; a SQLAlchemy scheme may name its driver (postgresql+psycopg2).
_TRACKING_SCHEMES = (
    "http",
    "https",
    "file",
    "sqlite",
    "postgresql",
    "mysql",
    "mssql",
    "databricks",
)


def uri(text: str) -> str:
    parts = urlsplit(text)
    family = parts.scheme.split("+")[0]
    if family not in _TRACKING_SCHEMES or (family.startswith("http") and not parts.hostname):
        raise ValueError(
            "a URI such as http://mlflow:5000, sqlite:////path/mlflow.db or "
            "postgresql://user:password@host:5432/mlflow"
        )
    return text


def bind(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError("host:port, e.g. 0.0.0.0:8000")
    return text


def days(text: str) -> timedelta:
    return timedelta(days=number(0, what="a number of days >= 0, e.g. 7")(text))


def pairs(text: str) -> tuple[str, ...]:
    """``a=x,b=y`` -> ``("a=x", "b=y")``; each item must be name=value (the names are checked by
    whoever uses them)."""
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    bad = [item for item in items if not all(part.strip() for part in item.partition("=")[::2])]
    if not items or bad or any("=" not in item for item in items):
        raise ValueError("canonical=source pairs separated by commas, e.g. transaction_id=TX_ID")
    return items
