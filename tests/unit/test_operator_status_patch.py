"""The status merge patch: what the stored status must become, at every depth."""

from berth_operator import merge_patch


def test_a_key_dropped_inside_a_track_is_nulled() -> None:
    old = {"stable": {"version": 1, "progressTime": "t0", "readyReplicas": 0}, "weight": 0}
    new = {"stable": {"version": 1, "readyReplicas": 1}, "weight": 0}
    assert merge_patch.between(old, new) == {
        "stable": {"version": 1, "readyReplicas": 1, "progressTime": None},
        "weight": 0,
    }


def test_a_dropped_section_is_nulled_whole_and_lists_are_replaced() -> None:
    old = {"canary": {"version": 2}, "conditions": [{"type": "Ready"}, {"type": "Degraded"}]}
    new = {"conditions": [{"type": "Ready"}]}
    assert merge_patch.between(old, new) == {"canary": None, "conditions": [{"type": "Ready"}]}


def test_a_section_that_appears_is_written_as_is() -> None:
    assert merge_patch.between({}, {"canary": {"version": 2, "weight": 10}}) == {
        "canary": {"version": 2, "weight": 10}
    }
