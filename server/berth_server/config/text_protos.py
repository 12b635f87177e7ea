"""Reads TF Serving's text-format config files (monitoring, SSL) with its error wording."""

from __future__ import annotations

from typing import TypeVar

from google.protobuf import message, text_format

from berth_server import errors

Message = TypeVar("Message", bound=message.Message)


def read_file(path: str, into: Message, *, type_name: str) -> Message:
    """Parse the text proto at `path` into `into`; unreadable or malformed is INVALID_ARGUMENT."""
    try:
        with open(path) as handle:
            return text_format.Parse(handle.read(), into)
    except OSError as error:
        raise errors.invalid_argument(f"Could not read {path}: {error}") from None
    except text_format.ParseError as error:
        raise errors.invalid_argument(
            f"Error parsing text-format {type_name}: {error}") from None
