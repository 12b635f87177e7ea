"""The server's own log lines: TF Serving-like text (default) or one JSON object per line.

`--log_format=json` writes `{"time", "level", "logger", "message"}` plus `exception` when a
traceback is attached, for log pipelines that parse JSON. A worker process (`--num_workers`)
names itself in each line: `w1` before the logger's name, or `"worker": 1`. In text, control
characters of a message (a model name with a newline, say) are escaped, so a client cannot
forge log lines.
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
    def __init__(self, worker: int | None = None) -> None:
        text = _TEXT if worker is None else _TEXT.replace(" %(name)s]", f" w{worker} %(name)s]")
        super().__init__(text, datefmt="%Y-%m-%d %H:%M:%S")

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = record.message.translate(_CONTROL_ESCAPES)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    def __init__(self, worker: int | None = None) -> None:
        super().__init__()
        self._worker = worker

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self._worker is not None:
            entry["worker"] = self._worker
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure(log_format: str, *, worker: int | None = None) -> None:
    """Install the root handler on stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(worker))
    else:
        handler.setFormatter(TextFormatter(worker))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
