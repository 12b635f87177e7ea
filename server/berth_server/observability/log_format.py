"""The server's own log lines: TF Serving-like text (default) or one JSON object per line.

`--log_format=json` writes `{"time", "level", "logger", "message"}` plus `exception` when a
traceback is attached, for log pipelines that parse JSON. In text, control characters of a
message (a model name with a newline, say) are escaped, so a client cannot forge log lines.
"""

from __future__ import annotations

import datetime
import logging
import sys

import orjson

FORMATS = ("text", "json")  # the values --log_format takes
_TEXT = "%(asctime)s.%(msecs)03d %(levelname).1s %(name)s] %(message)s"


# Every C0 control character and DEL, as the escape Python would print in a string literal.
_CONTROL_ESCAPES = {code: repr(chr(code))[1:-1] for code in (*range(0x20), 0x7F)}


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(_TEXT, datefmt="%Y-%m-%d %H:%M:%S")

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = record.message.translate(_CONTROL_ESCAPES)
        return super().formatMessage(record)


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
        handler.setFormatter(TextFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
