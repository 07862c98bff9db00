import gc
import os

from helpers import Driven, block

from braid_worker import isolation, loop
from braid_worker.constants import EXIT_PIPES_CLOSED, NATIVE_EXHAUSTED, NATIVE_RAISED, RAISED, RETURNED, UNCHANGED


def short(rows):
    return [(row[0], row[3]) for row in rows]


def test_invocations_run_and_their_short_rows_come_back(monkeypatch):
    driven = Driven(monkeypatch)
    driven.run([7, 8], [1, 2])
    rows = driven.wait(2)
    assert short(rows) == [(7, 10), (8, 20)]
    assert [row[4] for row in rows] == [UNCHANGED, UNCHANGED]


def test_an_interrupt_that_lands_before_an_invocation_begins_does_not_lose_it(monkeypatch):
    """A timeout interrupt meant for the invocation before, raised just as it ended, can land while the
    next one is being set up, before its code runs. That one must still run, once: the worker puts it
    back at the front of its queue. The interrupt is raised on cue: copying the block's variables raises
    it, the first time."""

    class Stale:
        fired = False

        def __bool__(self):
            return True

        def keys(self):
            if not Stale.fired:
                Stale.fired = True
                raise loop.BraidTimeout()
            return []

    driven = Driven(monkeypatch)
    driven.worker.programs[1][0].env = Stale()
    driven.run([7, 8], [1, 2])
    rows = driven.wait(2)
    assert Stale.fired
    assert short(rows) == [(7, 10), (8, 20)], "each invocation ran once"


def test_a_stale_interrupt_in_the_native_loop_reruns_its_invocation(monkeypatch):
    """In the native loop (native.rs) no Python runs between invocations, so such a stale interrupt lands
    in the next invocation's own code. It must not fail there: it is told by its time (far short of the
    timeout) and the invocation runs again. A stand-in for the native loop reports exactly that for
    invocation 7."""
    fired = []

    def run_plain(hand, it, main, slot, capture, cancelled, out, timeout_ns, start_ns, room, flush_after_ns, streams):
        for task in it:
            key, x, _ = task
            if key == 7 and not fired:
                fired.append(key)
                hand[0] = (NATIVE_RAISED, task, {}, loop.BraidTimeout(), 0, 1000)
                return
            out.append((key, 0, 1, main(x, {}), UNCHANGED))
        hand[0] = (NATIVE_EXHAUSTED,)

    monkeypatch.setattr(loop, "_run_plain", run_plain)
    driven = Driven(monkeypatch)
    # Loaded already: a block's first invocation on a worker runs in the Python loop, loading it.
    driven.worker.load_main(driven.worker.programs[1][0])
    driven.run([7, 8], [1, 2])
    rows = driven.wait(2)
    assert fired == [7]
    assert short(rows) == [(7, 10), (8, 20)], "each invocation ran once"


def test_a_raise_is_a_full_row_with_the_blocks_own_traceback(monkeypatch):
    code = "def main(block_input, backpack):\n    backpack['seen'] = 1\n    print('about to fail')\n    raise ValueError(f'bad {block_input}')\n"
    driven = Driven(monkeypatch, block(code, filename="Fails"))
    driven.run([3], [5])
    (row,) = driven.wait(1)
    key, _t0, _duration, value, backpack, status, ifs, stdout, stderr, error, items = row
    assert (key, value, backpack, status, ifs, stdout, stderr, items) == (3, None, {"seen": 1}, RAISED, (), "about to fail\n", "", None)
    kind, text, traceback, line = error
    assert (kind, text, line) == ("ValueError", "bad 5", 4)
    assert 'File "Fails", line 4, in main' in traceback
    assert "braid_worker" not in traceback


def test_if_expressions_see_the_return_value_and_the_backpack(monkeypatch):
    driven = Driven(monkeypatch, block(ifs=["return_data > 10", "backpack['n'] == 1"]))
    driven.run([1, 2], [1, 2], backpacks=[{"n": 1}, {"n": 2}])
    rows = driven.wait(2)
    assert [(row[0], row[3], row[5], row[6]) for row in rows] == [(1, 10, RETURNED, [False, True]), (2, 20, RETURNED, [True, False])]


def test_loading_reports_each_blocks_compile_problems_by_index(monkeypatch):
    driven = Driven(
        monkeypatch,
        block(),
        block("def main(block_input, backpack)\n    return 1\n"),
        block("def main(x):\n    return x\n"),
        block("x = 1\n"),
        block(ifs=["return_data >", "True"]),
        block(fan_outs=[{"key": "item", "label": "", "target": "A"}, {"key": "", "label": "item[", "target": "B"}]),
        block(fan_outs=[{"key": "item) for x in (1", "label": "", "target": "A"}]),
    )
    ((loaded),) = driven.replies
    assert loaded == {
        "op": "loaded",
        "program": 1,
        "errors": [
            {"block": 1, "if": None, "fan_out": None, "line": 1, "message": "SyntaxError: expected ':'"},
            {"block": 2, "if": None, "fan_out": None, "line": 1, "message": "main(x) takes one argument, but Braid passes two: main(block_input, backpack)"},
            {"block": 3, "if": None, "fan_out": None, "line": None, "message": "defines no main(block_input, backpack) function"},
            {"block": 4, "if": 0, "fan_out": None, "line": None, "message": "if expression 'return_data >': SyntaxError: invalid syntax"},
            {"block": 5, "if": None, "fan_out": 1, "line": None, "message": "item label expression 'item[': SyntaxError: '[' was never closed"},
            # Not an expression: it can't close the list comprehension it is put in.
            {"block": 6, "if": None, "fan_out": 0, "line": None, "message": "item key expression 'item) for x in (1': SyntaxError: unmatched ')'"},
        ],
    }


def test_an_unknown_request_is_an_error_that_names_it(monkeypatch):
    driven = Driven(monkeypatch)
    try:
        driven.worker.handle({"op": "launch", "program": 1})
    except ValueError as e:
        assert str(e) == "Braid sent a request this worker does not know: op 'launch'"
    else:
        raise AssertionError("an unknown op was passed over")


def test_a_failure_of_the_workers_own_code_fails_its_invocations_and_the_thread_goes_on(monkeypatch):
    """The native loop raising (as it did for a timeout past 64 bits of nanoseconds): the invocations
    of its batch fail saying so, and the thread runs the next batch. Before, the exception ended the
    worker's only exec thread and every later invocation waited forever."""

    def run_plain(*_args):
        raise OverflowError("Python int too large to convert to C long")

    monkeypatch.setattr(loop, "_run_plain", run_plain)
    driven = Driven(monkeypatch, block(), block(ifs=["True"]))
    driven.run([7, 8, 9], [1, 2, 3])
    # The first invocation loads the block in Python; the native loop would take the rest.
    rows = driven.wait(3)
    assert short(rows) == [(7, 10), (8, None), (9, None)]
    for row in rows[1:]:
        kind, text, traceback, _ = row[9]
        assert (row[5], kind) == (RAISED, "WorkerError")
        assert text == (
            "Braid's worker failed running this invocation, through no fault of the block's code: OverflowError: Python int too large to convert to C long"
        )
        assert "OverflowError" in traceback
    driven.run([10], [4], block_index=1)
    rows = driven.wait(4)
    assert [(row[0], row[3], row[6]) for row in rows[3:]] == [(10, 40, [True])]


def test_a_timeout_past_64_bits_of_nanoseconds_is_never():
    def timeout_ns(timeout_s):
        return loop.Block("B", "B", None, [], timeout_s, {}, "m").timeout_ns

    assert timeout_ns(2) == 2_000_000_000
    assert timeout_ns(86_400) == 86_400_000_000_000
    assert timeout_ns(1e10) == timeout_ns(1e308) == timeout_ns(float("inf")) == (1 << 63) - 1


def test_an_invocation_leaves_its_blocks_variables_to_no_one(monkeypatch):
    code = "import os\ndef main(block_input, backpack):\n    return os.environ['TOKEN']\n"
    monkeypatch.setattr(os, "environ", isolation.BlockEnviron(dict(os.environ)))
    driven = Driven(monkeypatch, block(code, env={"TOKEN": "secret"}))
    driven.run([1], [0])
    assert short(driven.wait(1)) == [(1, "secret")]
    (thread_slot,) = driven.worker.running.values()
    assert thread_slot[0] is None
    assert not [o for o in gc.get_objects() if isinstance(o, dict) and o.get("env") == {"TOKEN": "secret"} and "slot" in o]


def test_a_worker_whose_pipes_were_closed_under_it_exits_saying_so(monkeypatch):
    """A block's os.closerange closes the worker's own pipes to Braid; the worker can answer nothing, and
    its exit code is what tells Braid why it ended (not the 1 of an uncaught error)."""
    exits = []

    class Exited(Exception):
        pass

    def exit_(code):
        exits.append(code)
        raise Exited

    monkeypatch.setattr(loop, "real_os_exit", exit_)
    monkeypatch.setattr(loop.threading, "Thread", lambda **_: type("T", (), {"start": lambda self: None})())
    read, write = os.pipe()
    os.close(write)
    os.close(read)
    worker = loop.Worker(read, -1)
    monkeypatch.setattr(worker, "spawn", lambda n: None)
    try:
        worker.serve()
    except Exited:
        pass
    assert exits == [EXIT_PIPES_CLOSED]


ROWS = "def main(block_input, backpack):\n    return [{'id': i, 'city': c} for i, c in enumerate(block_input)]\n"


def test_a_fan_outs_items_are_named_by_its_key_and_label_expressions(monkeypatch):
    named = {"key": "f\"c{item['id']}\"", "label": "item['city'] + backpack['suffix']", "target": "Work"}
    by_index = {"key": "", "label": "", "target": "Other"}
    driven = Driven(monkeypatch, block(ROWS, fan_outs=[named, by_index, {"key": "item['id']", "label": "", "target": "Third"}]))
    driven.run([1], [["Paris", "Oslo"]], backpacks=[{"suffix": "!"}])
    (row,) = driven.wait(1)
    assert row[5] == RETURNED, row
    # Keys that are not text become their JSON.
    assert row[10] == [[["c0", "c1"], ["Paris!", "Oslo!"]], [None, None], [["0", "1"], None]]


def test_item_expressions_read_the_index_where_they_use_it_even_nested(monkeypatch):
    fan_outs = [
        {"key": "f\"{index}-{item['city']}\"", "label": "[index for _ in range(1)][0] + len(return_data)", "target": "Work"},
        {"key": "(lambda: index)()", "label": "item['city'].lower()", "target": "Other"},
    ]
    driven = Driven(monkeypatch, block(ROWS, fan_outs=fan_outs))
    driven.run([1], [["Paris", "Oslo"]])
    (row,) = driven.wait(1)
    assert row[5] == RETURNED, row
    assert row[10] == [[["0-Paris", "1-Oslo"], ["2", "3"]], [["0", "1"], ["paris", "oslo"]]]


def test_a_key_expression_that_raises_fails_the_invocation_naming_the_item(monkeypatch):
    driven = Driven(monkeypatch, block(ROWS, fan_outs=[{"key": "item['code']", "label": "", "target": "Work"}]))
    driven.run([1, 2], [["Paris", "Oslo"], []])
    rows = driven.wait(2)
    failed, empty = rows
    assert failed[5] == RAISED
    kind, text, _traceback, _line = failed[9]
    assert (kind, text) == ("KeyError", "'code' (in the item key expression of the fan-out to 'Work', item 0)")
    assert (empty[5], empty[10]) == (RETURNED, [[[], None]]), "no items, no names, no error"


def test_a_value_that_is_not_a_list_is_left_unnamed(monkeypatch):
    driven = Driven(monkeypatch, block(fan_outs=[{"key": "item", "label": "", "target": "Work"}]))
    driven.run([1], [3])
    (row,) = driven.wait(1)
    # Braid says the fan-out needs an array; the worker names nothing, so the row is a short one.
    assert row == (1, row[1], row[2], 30, UNCHANGED)
