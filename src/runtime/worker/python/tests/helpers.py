"""A worker driven in this process, without pipes: its requests handed to it, its replies and result
rows collected."""

import sys
import threading
import time

from braid_worker import isolation, loop
from braid_worker.capture import STDERR, STDOUT
from braid_worker.constants import OP_RUN
from braid_worker.protocol import message

TIMES_TEN = "def main(block_input, backpack):\n    return block_input * 10\n"


def block(code=TIMES_TEN, **spec):
    """A block as a load request lists it."""
    return {"name": "B", "filename": "B", "ifs": [], "timeout_s": 60, "env": {}, "code": code, **spec}


class Driven:
    def __init__(self, monkeypatch, *blocks):
        self.worker = loop.Worker(-1, -1)
        self.replies = []
        self.rows = []
        self.worker.send = self.replies.append

        def results_frame(short, full):
            self.rows.extend(short)
            self.rows.extend(full)
            return b""

        monkeypatch.setattr(loop, "results_frame", results_frame)
        # sys's streams as the worker sets them (loop.main), for as long as the test runs.
        monkeypatch.setattr(sys, "stdout", STDOUT)
        monkeypatch.setattr(sys, "stderr", STDERR)
        monkeypatch.setattr(isolation, "streams", [STDOUT, STDERR])
        monkeypatch.setattr(loop, "streams", isolation.streams)
        self.worker.send_raw = lambda _body: None
        self.worker.load(1, list(blocks) or [block()])

    def run(self, keys, inputs, block_index=0, backpacks=None):
        """Queues a run request (as Braid writes it) and starts an exec thread, once."""
        request = {"op": OP_RUN, "program": 1, "block": block_index, "keys": keys, "inputs": inputs}
        if backpacks is not None:
            request["backpacks"] = backpacks
        self.worker.tasks.append(message(request))
        if not self.worker.running:
            threading.Thread(target=self.worker.loop, daemon=True).start()
            while not self.worker.running:
                time.sleep(0.001)
        with self.worker.cv:
            self.worker.cv.notify()

    def wait(self, n, timeout=10):
        """The first n result rows, by key."""
        deadline = time.monotonic() + timeout
        while len(self.rows) < n and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.05)
        return sorted(self.rows, key=lambda row: row[0])
