"""Process logging for ``hulytrio serve`` / ``agent`` (and clients that want it).

hulytrio logs through the standard ``logging`` module everywhere (loggers
``hulytrio.hub``, ``hulytrio.client``, ...); this module only sets up the
root handler a process writes through, per ``LoggingConfig``:

- ``format``: ``text`` (one human line) or ``json`` (one JSON object a line,
  by python-json-logger, a ``logging.Formatter``: nothing in the code that
  logs changes, which structlog would have asked of every call site);
- ``destination``: ``stdout``, ``stderr`` or a file path, opened for
  appending with a ``WatchedFileHandler`` (it reopens the file when
  logrotate moves it);
- every line carries ``service`` (``hub``, ``agent`` or ``client``), and the
  seed's fields: ``timestamp``, ``level``, ``message``, plus ``logger`` and
  ``environment`` (``NODE_ENV``, when set); an exception adds ``exc_info``.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from typing import TextIO

from .config import ConfigError, LoggingConfig

__all__ = ["TEXT_FORMAT", "setup_logging"]

#: The ``text`` format's line.
TEXT_FORMAT = "%(asctime)s %(levelname)s %(service)s %(name)s: %(message)s"


class _ServiceFilter(logging.Filter):
    """Stamps every record with the process's ``service`` (and ``environment``)."""

    def __init__(self, service: str, environment: str | None) -> None:
        super().__init__()
        self.service = service
        self.environment = environment

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        if self.environment is not None:
            record.environment = self.environment
        return True


def _json_formatter() -> logging.Formatter:
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter(
        "{asctime}{levelname}{name}{message}", style="{",
        rename_fields={"asctime": "timestamp", "levelname": "level", "name": "logger"},
        datefmt="%Y-%m-%dT%H:%M:%S%z",
    )


def setup_logging(config: LoggingConfig, service: str) -> logging.Handler:
    """Send every hulytrio log line to ``config.destination`` in ``config.format``.

    Replaces the root logger's handlers (a process logs one way) and sets its
    level.  Returns the handler installed.

    Raises:
        ConfigError: if the destination file cannot be opened for appending.
    """
    handler: logging.Handler
    if config.destination in ("stdout", "stderr"):
        stream: TextIO = sys.stdout if config.destination == "stdout" else sys.stderr
        handler = logging.StreamHandler(stream)
    else:
        try:
            handler = logging.handlers.WatchedFileHandler(config.destination, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"logging.destination={config.destination} cannot be opened "
                              f"for appending: {exc.strerror or exc}") from None
    if config.format == "json":
        handler.setFormatter(_json_formatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.addFilter(_ServiceFilter(service, os.environ.get("NODE_ENV") or None))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(config.level.upper())
    return handler
