"""The server's own log lines: a message cannot forge another line."""

from __future__ import annotations

import logging
import sys

from berth_server.observability import log_format


def record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("berth_server", logging.INFO, __file__, 1, message, args, None)


def test_control_characters_of_a_message_are_escaped_in_text() -> None:
    line = log_format.TextFormatter().format(
        record("Loading %s", "evil\n2026-01-01 00:00:00.000 I berth_server] forged\r\t\x1b[31m"))
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert line.endswith("Loading evil\\n2026-01-01 00:00:00.000 I berth_server] forged\\r\\t"
                         "\\x1b[31m")


def test_a_traceback_keeps_its_lines() -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        entry = record("failed")
        entry.exc_info = sys.exc_info()
    lines = log_format.TextFormatter().format(entry).splitlines()
    assert lines[0].endswith("failed")
    assert lines[1] == "Traceback (most recent call last):"


def test_json_lines_are_one_object_each() -> None:
    line = log_format.JsonFormatter().format(record("Loading %s", "evil\nname"))
    assert "\n" not in line
    assert '"message":"Loading evil\\nname"' in line
