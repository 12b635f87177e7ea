"""drift.carries: whether a live object still has every desired field."""

import pytest

from berth_operator import drift


@pytest.mark.parametrize(
    ("live", "desired", "expected"),
    [
        ({"a": 1, "b": 2}, {"a": 1}, True),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ({"a": {"x": 1, "y": 2}}, {"a": {"x": 1}}, True),
        ({"l": [{"n": 1, "extra": 0}]}, {"l": [{"n": 1}]}, True),
        ({"l": [1, 2]}, {"l": [1]}, False),
        ({"cpu": "500m"}, {"cpu": "0.5"}, True),
        ({"memory": "1Gi"}, {"memory": "1024Mi"}, True),
        ({"gpu": "1"}, {"gpu": 1}, True),
        ({"image": "a"}, {"image": "b"}, False),
        (None, {"a": 1}, False),
        ({"data": {"k": "v", "old": "w"}}, {"data": {"k": "v"}}, False),
        ({"data": {"k": "v"}, "extra": 1}, {"data": {"k": "v"}}, True),
    ],
)
def test_live_objects_carry_desired_fields_ignoring_server_additions(
    live: object, desired: object, expected: bool
) -> None:
    assert drift.carries(live, desired) is expected
