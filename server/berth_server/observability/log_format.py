"""The server's own log lines: TF Serving-like text (default) or one JSON object per line.

`--log_format=json` writes `{"time", "level", "logger", "message"}` plus `exception` when a
traceback is attached, for log pipelines that parse JSON.
"""

from __future__ import annotations

import datetime
import logging
import sys

import orjson

FORMATS = ("text", "json")  # the values --log_format takes
_TEXT = "%(asctime)s.%(msecs)03d %(levelname).1s %(name)s] %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure(log_format: str) -> None:
    """Install the root handler on stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(_TEXT, datefmt="%Y-%m-%d %H:%M:%S"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
