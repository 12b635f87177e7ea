"""What one REST connection may hold, against a real server: raw sockets, as an attacker sends.

Each case used to hold server memory or a connection forever: headers that never end or grow
without bound, a body that never arrives, as many connections as a client cares to open, and
bodies that together exceed what the server can hold. Each is now refused with a short JSON error
and a closed connection, and the server keeps answering everyone else.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import waiting
from server_http import post

if TYPE_CHECKING:
    from conftest import ServerProcess

PREDICT = "/v1/models/half_plus_two:predict"
MAX_CONNECTIONS = 8
MAX_HEADER_BYTES = 4096
MAX_HEADER_COUNT = 20
BODY_BUDGET = 64 << 10
DEADLINE_SECONDS = 1
GENEROUS_SECONDS = 60  # a socket timeout no loaded machine reaches; the server decides timing


def model_flags(exported_models: Path) -> list[str]:
    return [f"--model_base_path={exported_models / 'half_plus_two'}", "--model_name=half_plus_two"]


@pytest.fixture(scope="module")
def limited(exported_models: Path,
            start_module_server: Callable[..., ServerProcess]) -> ServerProcess:
    return start_module_server(
        *model_flags(exported_models), f"--rest_api_max_connections={MAX_CONNECTIONS}",
        f"--rest_api_max_header_bytes={MAX_HEADER_BYTES}",
        f"--rest_api_max_header_count={MAX_HEADER_COUNT}",
        f"--rest_api_max_body_bytes_in_flight={BODY_BUDGET}")


@pytest.fixture(scope="module")
def impatient(exported_models: Path,
              start_module_server: Callable[..., ServerProcess]) -> ServerProcess:
    return start_module_server(
        *model_flags(exported_models), f"--rest_api_header_timeout_seconds={DEADLINE_SECONDS}",
        f"--rest_api_body_timeout_seconds={DEADLINE_SECONDS}")


@pytest.fixture
def connect(request: pytest.FixtureRequest) -> Iterator[Callable[[int], socket.socket]]:
    """Raw client sockets, all closed at the end of the test."""
    opened: list[socket.socket] = []

    def open_to(port: int) -> socket.socket:
        client = socket.create_connection(("127.0.0.1", port), timeout=GENEROUS_SECONDS)
        opened.append(client)
        return client

    yield open_to
    for client in opened:
        client.close()


def read_reply(client: socket.socket) -> tuple[int, bytes]:
    """Read the server's reply until it closes the connection: (status, body)."""
    received = b""
    while chunk := client.recv(65536):
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def answer(client: socket.socket) -> tuple[int, str]:
    """(status, error message) of a refusal."""
    status, body = read_reply(client)
    return status, json.loads(body)["error"]


def predict_body(size: int) -> bytes:
    """A valid predict body of exactly `size` bytes (JSON allows trailing spaces)."""
    body = b'{"instances": [1.0, 2.0]}'
    return body + b" " * (size - len(body))


def post_head(length: int) -> bytes:
    return (f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Connection: close\r\nContent-Length: {length}\r\n\r\n").encode()


def served(port: int) -> bool:
    return post(port, PREDICT, {"instances": [1.0, 2.0]}).json() == {"predictions": [2.5, 3.0]}


def test_headers_that_grow_past_the_limit_are_refused_with_431(
        limited: ServerProcess, connect: Callable[[int], socket.socket]) -> None:
    client = connect(limited.rest_port)
    client.sendall(b"GET /v1/models/half_plus_two HTTP/1.1\r\nX-Pad: ")
    try:  # the header never ends; the server stops reading once it passes the limit
        for _ in range(64):
            client.sendall(b"a" * 1024)
    except (BrokenPipeError, ConnectionResetError):
        pass
    status, message = answer(client)
    assert status == 431
    assert message == f"Request headers exceed the maximum of {MAX_HEADER_BYTES} bytes"
    assert served(limited.rest_port)


def test_too_many_headers_are_refused_with_431(
        limited: ServerProcess, connect: Callable[[int], socket.socket]) -> None:
    client = connect(limited.rest_port)
    headers = "".join(f"X-{index}: 1\r\n" for index in range(MAX_HEADER_COUNT + 5))
    client.sendall(f"GET /v1/models/half_plus_two HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
    status, message = answer(client)
    assert status == 431
    assert message == f"Request has more than the maximum of {MAX_HEADER_COUNT} headers"


def test_headers_within_the_limits_are_served(limited: ServerProcess) -> None:
    headers = {f"X-{index}": "v" * 100 for index in range(MAX_HEADER_COUNT - 5)}
    connection = http.client.HTTPConnection("127.0.0.1", limited.rest_port,
                                            timeout=GENEROUS_SECONDS)
    try:
        connection.request("POST", PREDICT, body=b'{"instances": [1.0]}', headers=headers)
        assert json.loads(connection.getresponse().read()) == {"predictions": [2.5]}
    finally:
        connection.close()


def test_a_connection_past_the_limit_is_refused_with_503_and_the_next_one_is_served(
        limited: ServerProcess, connect: Callable[[int], socket.socket]) -> None:
    def held_connection() -> socket.socket | None:
        """A connection the server has taken (it answered on it), left mid-request."""
        client = connect(limited.rest_port)
        client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while not received.endswith(b"}\n") and (chunk := client.recv(65536)):
            received += chunk
        if not received.startswith(b"HTTP/1.1 200"):
            return None  # refused: a connection of an earlier test was still counted
        client.sendall(b"GET /healthz HTTP/1.1\r\n")
        return client

    held = [waiting.wait_for(held_connection, timeout_seconds=GENEROUS_SECONDS,
                             message="the server to take a connection")
            for _ in range(MAX_CONNECTIONS)]
    status, message = answer(connect(limited.rest_port))
    assert status == 503
    assert message == (f"The REST port already has {MAX_CONNECTIONS} open connections "
                       "(--rest_api_max_connections); retry later")
    held[0].close()
    waiting.wait_for(lambda: _try_served(limited.rest_port), timeout_seconds=GENEROUS_SECONDS,
                     message="a connection to be served once one of the held ones closed")
    for client in held[1:]:  # the held requests were never dropped
        client.sendall(b"Host: x\r\nConnection: close\r\n\r\n")
        assert read_reply(client)[0] == 200


def _try_served(port: int) -> bool:
    try:
        return served(port)
    except ConnectionError:
        return False


def test_bodies_past_the_budget_are_refused_while_others_hold_it_and_none_is_lost(
        limited: ServerProcess, connect: Callable[[int], socket.socket]) -> None:
    length = BODY_BUDGET + 1024
    body = predict_body(length)
    held = connect(limited.rest_port)
    held.sendall(post_head(length) + body[:BODY_BUDGET - 4096])

    def second_body_status() -> int:
        client = connect(limited.rest_port)
        client.sendall(post_head(8192) + predict_body(8192))
        return read_reply(client)[0]

    # Until the server holds the first body's bytes, the second is served alone.
    waiting.wait_for(second_body_status, until=lambda status: status == 503,
                     timeout_seconds=GENEROUS_SECONDS,
                     message="a second body to be refused while the first holds the budget")
    held.sendall(body[BODY_BUDGET - 4096:])
    assert read_reply(held) == (200, b'{"predictions":[2.5,3.0]}')
    assert served(limited.rest_port)


def test_a_body_alone_may_pass_the_budget_up_to_the_size_limit(limited: ServerProcess) -> None:
    reply = post(limited.rest_port, PREDICT, predict_body(4 * BODY_BUDGET))
    assert reply.json() == {"predictions": [2.5, 3.0]}


def test_headers_that_never_end_are_answered_408_at_their_deadline(
        impatient: ServerProcess, connect: Callable[[int], socket.socket]) -> None:
    silent = connect(impatient.rest_port)
    slow = connect(impatient.rest_port)
    slow.sendall(b"GET /v1/models/half_plus_two HTTP/1.1\r\nHost: x\r\n")
    for client in (silent, slow):
        status, message = answer(client)
        assert status == 408
        assert message == (f"Request headers were not received within {DEADLINE_SECONDS} "
                           "seconds")


@pytest.mark.parametrize("framing", ["declared length", "endless chunks"])
def test_a_body_that_never_ends_is_answered_408_at_its_deadline(
        impatient: ServerProcess, connect: Callable[[int], socket.socket], framing: str) -> None:
    client = connect(impatient.rest_port)
    if framing == "declared length":  # 1 GB promised, 10 bytes sent
        client.sendall(post_head(1 << 30) + b'{"instance')
    else:
        client.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n".encode())
        client.settimeout(0.05)
        while not _closed_or_answered(client):  # a chunk at a time, until the server stops it
            client.sendall(b"1\r\n \r\n")
        client.settimeout(GENEROUS_SECONDS)
    status, message = answer(client)
    assert status == 408
    assert message == f"Request body was not received within {DEADLINE_SECONDS} seconds"


def _closed_or_answered(client: socket.socket) -> bool:
    try:
        client.recv(1, socket.MSG_PEEK)  # an answer's first byte, or b"" at the close
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


def test_requests_that_arrive_whole_are_served_by_the_impatient_server(
        impatient: ServerProcess) -> None:
    assert served(impatient.rest_port)
    reply = post(impatient.rest_port, PREDICT, predict_body(1 << 20))
    assert reply.json() == {"predictions": [2.5, 3.0]}
