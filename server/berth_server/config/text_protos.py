"""Reads TF Serving's text-format config files (models, batching, monitoring, SSL) in its words.

A file that cannot be read is NOT_FOUND / PERMISSION_DENIED as TensorFlow's file system reports
it (`<path>; No such file or directory`); one that does not parse is INVALID_ARGUMENT with
protobuf's reason (`Error parsing text-format tensorflow.serving.ModelServerConfig: 3:1 : …`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from google.protobuf import message, text_format

from berth_server import errors

Message = TypeVar("Message", bound=message.Message)


def parse(text: str, into: Message, *, type_name: str) -> Message:
    """Parse `text` into `into`, whose full proto name the users know is `type_name`."""
    try:
        return text_format.Parse(text, into)
    except text_format.ParseError as error:
        raise errors.invalid_argument(
            f"Error parsing text-format {type_name}: {error}") from None


def read_file(path: str | Path, into: Message, *, type_name: str) -> Message:
    try:
        text = Path(path).read_text()
    except OSError as error:
        code = (errors.Code.NOT_FOUND if isinstance(error, FileNotFoundError)
                else errors.Code.PERMISSION_DENIED if isinstance(error, PermissionError)
                else errors.Code.UNKNOWN)
        raise errors.ServingError(code, f"{path}; {error.strerror or error}") from None
    return parse(text, into, type_name=type_name)
