import json

from braid_worker import protocol
from braid_worker.constants import RAISED, RETURNED, UNCHANGED


class Array:
    """Stands for a numpy array: JSON takes what its tolist gives."""

    def tolist(self):
        return [1, 2]


def test_full_rows_encode_with_values_json_cant_hold_failing_alone():
    rows = [
        protocol.full_row(1, 0, 5, Array(), UNCHANGED, RETURNED, [], "", "", None),
        protocol.full_row(2, 0, 5, {1, 2}, {"k": 1}, RETURNED, [], "said", "", None),
        protocol.full_row(3, 0, 5, "bad \udc80 text", {}, RETURNED, [], "out \udcff", "", None),
    ]
    first, second, third = json.loads(protocol.encode_rows(rows))
    assert first == [1, 0, 5, [1, 2], UNCHANGED, RETURNED, [], "", "", None, None]
    assert second[:9] == [2, 0, 5, None, {"k": 1}, RAISED, [], "said", ""]
    assert second[9] == ["TypeError", "the return value is not JSON-serialisable: set (Object of type set is not JSON serializable)", "", None]
    assert third[5] == RAISED
    assert third[7] == "out \ufffd"
    assert third[9][1].startswith("the return value holds text that is not Unicode: '\\udc80'")


def test_a_short_row_that_cant_be_encoded_becomes_a_failing_full_row(monkeypatch):
    packed = []
    monkeypatch.setattr(protocol, "pack_results", lambda *parts: packed.append(parts) or b"")
    protocol.results_frame([(1, 10, 5, "fine", UNCHANGED), (2, 20, 6, {1}, UNCHANGED), (3, 30, 7, Array(), {"b": 1})], [])
    ((start, keys, t0s, durations, values, backpacks, full),) = packed
    assert start == protocol.START_WALL_US
    assert (keys, t0s, durations) == ([1, 3], [10, 30], [5, 7])
    assert json.loads(values) == ["fine", [1, 2]]
    assert json.loads(backpacks) == [UNCHANGED, {"b": 1}]
    ((key, t0, duration, value, backpack, status, _, _, _, error, _),) = json.loads(full)
    assert (key, t0, duration, value, backpack, status, error[0]) == (2, 20, 6, None, UNCHANGED, RAISED, "TypeError")


def test_unchanged_backpacks_are_sent_as_none(monkeypatch):
    packed = []
    monkeypatch.setattr(protocol, "pack_results", lambda *parts: packed.append(parts) or b"")
    protocol.results_frame([(1, 10, 5, 1, UNCHANGED)], [])
    assert packed[0][5] is None


def test_without_braids_native_module_the_package_packs_frames_itself():
    assert protocol.pack_results is protocol.pack_results_plain
    assert protocol.native_loads(b"[1]") is None
