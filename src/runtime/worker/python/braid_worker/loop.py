"""The worker's loop: reads Braid's requests, compiles programs, runs invocations on a pool of exec
threads (the native loop in native.rs takes the plain ones), and sends results back. Timeouts and cancels
are exceptions raised in the runaway thread by the monitor thread; one that Python can't stop is reported
as stuck, and Braid kills the process."""

import ast
import collections
import errno
import functools
import gc
import importlib
import itertools
import linecache
import os
import site
import sys
import threading
import time
import types

from . import isolation
from .capture import STDERR, STDOUT, captured, tls
from .constants import (
    CANCELLED,
    EXIT_PIPES_CLOSED,
    NATIVE_CANCELLING,
    NATIVE_EXHAUSTED,
    NATIVE_FLUSH,
    NATIVE_PRINTED,
    OP_CANCEL,
    OP_LOAD,
    OP_UNLOAD,
    RAISED,
    RETURNED,
    RUN_PREFIX,
    TIMED_OUT,
    UNCHANGED,
)
from .isolation import forked, home, real_chdir, real_os_exit, restore_home, restore_streams, streams
from .protocol import (
    START_NS,
    beat,
    error,
    exiting,
    fast_json,
    full_row,
    load_error,
    loaded,
    message,
    native_loads,
    read_frame,
    read_request,
    results_frame,
    stuck,
    write_frame,
)

try:
    # The hot loop for plain invocations, in Rust (native.rs); absent in a plain Python, where the loop
    # below does everything.
    from braid_native import run_plain as _run_plain
except ImportError:
    _run_plain = None

EMPTY = ()
get_ident = threading.get_ident
monotonic_ns = time.monotonic_ns
FRESH = object()
FLUSH_EVERY = 256
FLUSH_AFTER_NS = 2_000_000
TICK_S = 0.005
GRACE_NS = 1_000_000_000
BEAT_NS = 1_000_000_000
# The longest timeout the native loop takes (nanoseconds in 64 bits: 292 years); a longer one is never.
_MAX_TIMEOUT_NS = (1 << 63) - 1


class BraidTimeout(BaseException):
    """Raised inside an invocation that ran past its block's timeout_s (BaseException: `except Exception` in user code must not swallow it)."""


class BraidCancelled(BaseException):
    """Raised inside an invocation whose run was stopped."""


class Block:
    __slots__ = ("name", "filename", "code", "ifs", "fan_outs", "timeout_s", "timeout_ns", "env", "main", "load_error", "lock", "module_name")

    def __init__(self, name, filename, code, ifs, timeout_s, env, module_name):
        self.name = name
        self.filename = filename
        self.code = code
        self.ifs = ifs
        # One ItemNamer per fan-out of the block when one of them names its items; empty otherwise.
        self.fan_outs = []
        self.timeout_s = timeout_s
        self.timeout_ns = _timeout_ns(timeout_s)
        self.env = env
        self.main = None
        self.load_error = None
        self.lock = threading.Lock()
        # The block's code runs as this module, registered in sys.modules: pickle finds the functions it
        # defines there (multiprocessing.Pool sends them to its processes by name).
        self.module_name = module_name


def _timeout_ns(timeout_s):
    """The timeout in nanoseconds, at most _MAX_TIMEOUT_NS (Braid allows a day; this takes anything)."""
    try:
        return min(int(timeout_s * 1e9), _MAX_TIMEOUT_NS)
    except (OverflowError, TypeError, ValueError):
        return _MAX_TIMEOUT_NS


class Batch:
    """A decoded run request: its block and an iterator over its (key, input, backpack), shared by the
    exec threads."""

    __slots__ = ("block", "size", "it", "done", "fresh")

    def __init__(self, block, size, it, fresh=False):
        self.block = block
        self.size = size
        self.it = it
        # Every task starts with a fresh empty backpack (the request said so).
        self.fresh = fresh
        # Set by the first thread to find the iterator exhausted; the batch then leaves the queue.
        self.done = False


class Worker:
    def __init__(self, fd_in, fd_out):
        self.fd_in = fd_in
        self.fd_out = fd_out
        self.programs = {}
        # Run requests as they arrived (bytes), decoded in place into a Batch by the first thread to reach them.
        self.tasks = collections.deque()
        self.take_lock = threading.Lock()
        # Result rows: appending to a deque is atomic, so exec threads append without a lock. `out` holds
        # the short rows (key, t0, duration, return, backpack), `slow` the full ones (protocol.full_row).
        self.out = collections.deque()
        self.slow = collections.deque()
        self.flush_lock = threading.Lock()
        self.write_lock = threading.Lock()
        self.last_flush = monotonic_ns()
        self.cv = threading.Condition()
        self.idle = 0
        self.threads = 0
        self.max_threads = int(os.environ.get("BRAID_WORKER_MAX_THREADS", "512"))
        # Invocations whose results were sent (the monitor adds those still waiting to go).
        self.completed = 0
        # thread ident -> its slot: [key, started (monotonic ns), timeout (ns), interrupted_at or None],
        # key None while the thread runs no invocation. One list per thread for its life, refilled in one
        # step per invocation (a slice assignment), so the monitor never sees half of one and half of
        # another.
        self.running = {}
        self.cancelled = set()

    # ----- replies -----
    def send_raw(self, body):
        with self.write_lock:
            write_frame(self.fd_out, body)

    def send(self, reply):
        self.send_raw(message(reply))

    def flush(self):
        with self.flush_lock:
            out, slow = self.out, self.slow
            if not out and not slow:
                return
            popleft = out.popleft
            rows = [popleft() for _ in range(len(out))]
            popleft = slow.popleft
            slow_rows = [popleft() for _ in range(len(slow))]
            try:
                frame = results_frame(rows, slow_rows)
            except BaseException:
                # An interrupt meant for an invocation that has ended (or a failure): the rows wait
                # for the next flush rather than being lost, and with them their invocations.
                out.extendleft(rows)
                slow.extendleft(slow_rows)
                raise
            self.last_flush = monotonic_ns()
            self.completed += len(rows) + len(slow_rows)
            self.send_raw(frame)

    # ----- requests -----
    def serve(self):
        threading.Thread(target=self.monitor, name="braid-monitor", daemon=True).start()
        self.spawn(1)
        while True:
            try:
                body = read_frame(self.fd_in)
            except OSError as e:
                if e.errno != errno.EBADF:
                    raise
                # A block closed this worker's descriptors (os.closerange): Braid can't be answered,
                # and the exit code is all it can be told.
                real_os_exit(EXIT_PIPES_CLOSED)
            if body is None:
                return
            if body.startswith(RUN_PREFIX):
                # Decoded by the thread that picks it up: this thread only hands bytes over, so it
                # holds the interpreter lock for as short a time as it can.
                self.tasks.append(body)
                with self.cv:
                    self.cv.notify()
                continue
            self.handle(read_request(body))

    def handle(self, request):
        """A request other than a run (see serve)."""
        op = request["op"]
        if op == OP_LOAD:
            self.load(request["program"], request["blocks"], request.get("site_packages"), request.get("cwd"), request.get("compile_only", False))
        elif op == OP_CANCEL:
            self.cancel(request["keys"])
        elif op == OP_UNLOAD:
            if self.unload(request["program"]):
                # Its variables' values go with it: what still holds them once the program is gone is
                # garbage in cycles (a module's functions and globals, a failed load's traceback), which
                # the next project's blocks would find through gc until a full collection.
                gc.collect()
        else:
            # Braid and this package come from one build: this is a bug, and the worker ends saying so.
            raise ValueError(f"Braid sent a request this worker does not know: op {op!r}")

    def unload(self, program_id):
        """Forgets a program; whether it had variables' values."""
        blocks = self.programs.pop(program_id, ())
        for block in blocks:
            sys.modules.pop(block.module_name, None)
            isolation.unpublish_module(block)
        return any(block.env for block in blocks)

    def load(self, program_id, blocks, site_packages=None, cwd=None, compile_only=False):
        if cwd:
            try:
                real_chdir(cwd)
                home[0] = cwd
            except OSError:
                # Gone or unreadable: the code runs where the worker is, as for an unsaved project.
                pass
        # One folder (the project's environment), or several in `site`'s order (a Dask worker's own
        # Python: its user site, then its site-packages).
        folders = [site_packages] if isinstance(site_packages, str) else list(site_packages or [])
        new = [folder for folder in folders if folder not in sys.path]
        if new:
            site_packages = folders[0]
            modules_dir = isolation.modules_dir[0]
            # Where `site` would put them: after the standard library (a backport must not shadow the
            # module it backports), before the block modules (which must not shadow a library).
            before = [p for p in sys.path if p != modules_dir]
            for folder in new:
                site.addsitedir(folder)
            added = [p for p in sys.path if p not in before and p != modules_dir]
            sys.path[:] = before + added + ([modules_dir] if modules_dir in sys.path else [])
            importlib.invalidate_caches()
            # Python started from user code (subprocess, multiprocessing) is the environment's, so it
            # has the project's libraries too: <env>/lib/pythonX.Y/site-packages -> <env>/bin/python.
            env_python = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(site_packages))), "bin", "python")
            if os.path.exists(env_python):
                sys.executable = env_python
        compiled = []
        errors = []
        for index, spec in enumerate(blocks):
            filename = spec["filename"]
            # A byte order mark (code pasted from a file saved with one) is not code, as Python itself
            # skips it at the start of a source file.
            code = spec["code"].removeprefix("\ufeff")
            # The traceback shows the block's own source lines.
            linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
            block = Block(spec["name"], filename, None, [], spec["timeout_s"], spec.get("env") or {}, f"braid_block_{program_id}_{index}")
            if spec.get("runnable", True):
                try:
                    block.code = compile(code, filename, "exec")
                    if not compile_only:
                        isolation.publish_module(block, code)
                    tree = ast.parse(code, filename)
                    mains = [node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "main"]
                    if not mains:
                        errors.append(load_error(index, None, None, "defines no main(block_input, backpack) function"))
                    elif (problem := _main_signature_problem(mains[-1])) is not None:
                        errors.append(load_error(index, None, mains[-1].lineno, problem))
                except SyntaxError as e:
                    errors.append(load_error(index, None, e.lineno, f"{type(e).__name__}: {e.msg}"))
                except Exception as e:
                    block.code = None
                    errors.append(load_error(index, None, None, _not_compiled(e)))
            for if_index, expr in enumerate(spec.get("ifs", [])):
                try:
                    block.ifs.append(compile(expr, f"{filename} (if #{if_index + 1})", "eval"))
                except SyntaxError as e:
                    block.ifs.append(None)
                    errors.append(load_error(index, if_index, None, f"if expression {expr!r}: SyntaxError: {e.msg}"))
                except Exception as e:
                    block.ifs.append(None)
                    errors.append(load_error(index, if_index, None, f"if expression {expr!r}: {_not_compiled(e)}"))
            for fan_out_index, names in enumerate(spec.get("fan_outs", [])):
                namer = ItemNamer(filename, fan_out_index, names)
                block.fan_outs.append(namer)
                errors.extend(load_error(index, None, None, problem, fan_out_index) for problem in namer.problems)
            compiled.append(block)
        self.programs[program_id] = compiled
        self.send(loaded(program_id, errors))

    def cancel(self, keys):
        keys = set(keys)
        self.cancelled |= keys
        for ident, slot in list(self.running.items()):
            if slot[0] in keys:
                slot[3] = monotonic_ns()
                _async_raise(ident, BraidCancelled)

    # ----- threads -----
    def spawn(self, n):
        for _ in range(n):
            self.threads += 1
            threading.Thread(target=self.loop, name=f"braid-exec-{self.threads}", daemon=True).start()

    def loop(self):
        tls.capture = [None, None]
        slot = [None, 0, 0, None]
        tls.slot = slot
        # An exec thread started while an invocation ran belongs to no invocation.
        tls.owner = tls.env = None
        self.running[get_ident()] = slot
        # The batch this thread takes invocations from, and the key of the invocation it is on until
        # its row is queued: what a failure of the worker's own code leaves without a result.
        current = [None, None]
        while True:
            try:
                try:
                    self.loop_once(slot, current)
                except (BraidTimeout, BraidCancelled):
                    # A stray interrupt aimed at an invocation that had just finished: nothing to stop.
                    pass
                except BaseException as e:
                    self.own_failure(slot, current, e)
            except BaseException:
                # Even reporting failed (or an interrupt landed in it): the thread goes on regardless.
                pass

    def own_failure(self, slot, current, exc):
        """The worker's own code failed (not a block's: that is its invocation's result), say a value it
        could not take: the invocation it was on and the rest of its batch fail, saying so, and the thread
        goes on with the next batch."""
        batch, key = current
        current[:] = (None, None)
        keys = [key] if key is not None else []
        if slot[0] is not None and slot[0] != key:
            keys.append(slot[0])
        slot[0] = None
        if batch is not None:
            keys.extend(task[0] for task in batch.it)
            batch.done = True
        capture = tls.capture
        capture[0] = capture[1] = None
        import traceback

        text = f"Braid's worker failed running this invocation, through no fault of the block's code: {type(exc).__name__}: {exc}"
        failure = error("WorkerError", text, traceback.format_exc())
        now = monotonic_ns() - START_NS
        self.slow.extend(full_row(k, now, 0, None, None, RAISED, [], "", "", failure) for k in keys)
        self.flush()

    def loop_once(self, slot, current):
        """Takes batches until the thread is interrupted, waiting while none waits. Between batches it
        holds nothing of the last one: an idle thread must not keep a block's objects (its functions, the
        values its module read from its variables) alive once its program is gone."""
        capture = tls.capture
        while True:
            batch = self.take()
            if batch is None:
                current[0] = None
                self.flush()
                with self.cv:
                    if self.tasks:
                        continue
                    self.idle += 1
                    self.cv.wait()
                    self.idle -= 1
                continue
            current[0] = batch
            self.run_batch(batch, slot, capture, current)
            current[0] = None

    def run_batch(self, batch, slot, capture, current):
        """Runs the invocations of a batch that this thread takes. The hot path of a big fan-out:
        everything an invocation needs is a local here, and only what the user's code may observe is
        set per call."""
        out = self.out
        append = out.append
        append_slow = self.slow.append
        cancelled = self.cancelled
        block = batch.block
        main = block.main
        block_ifs = block.ifs
        block_env = block.env
        timeout_ns = block.timeout_ns
        block_fan_outs = block.fan_outs
        # A block's variables are its own invocations' alone (an interrupt may have left a copy).
        tls.env = None
        native = batch.fresh and not block_ifs and not block_fan_outs and not block_env and _run_plain is not None
        if native and main is not None:
            self.run_native(batch, block, main, slot, capture, timeout_ns, current)
            return
        for task in batch.it:
            try:
                key, block_input, backpack = task
                current[1] = key
                if backpack is FRESH:
                    backpack = {}
                    empty_in = True
                else:
                    empty_in = backpack.__class__ is dict and not backpack
                # Each invocation gets its own copy of its block's variables (see BlockEnviron).
                if block_env:
                    tls.env = dict(block_env)
                ret = None
                ifs = EMPTY
                items = None
                failure = None
                m0 = monotonic_ns()
                slot[:] = (key, m0, timeout_ns, None)
            except (BraidTimeout, BraidCancelled):
                # An interrupt aimed at the invocation before, raised just as it ended, landed
                # before this one began: this one runs after all, from the front of the queue.
                slot[0] = current[1] = None
                self.tasks.appendleft(Batch(block, 1, iter((task,))))
                continue
            try:
                try:
                    try:
                        if cancelled and key in cancelled:
                            raise BraidCancelled()
                        ret = (main or self.load_main(block))(block_input, backpack)
                        if block_ifs:
                            scope = {"return_data": ret, "backpack": backpack, "block_input": block_input, "lambda_input": block_input}
                            ifs = [bool(eval(expr, scope)) for expr in block_ifs]
                        if block_fan_outs and ret.__class__ in (list, tuple):
                            items = [namer.names(ret, backpack, block_input) for namer in block_fan_outs]
                    finally:
                        # Cleared before an interrupt can land outside the user's code.
                        slot[0] = None
                    status = RETURNED
                except BaseException as e:
                    status, failure = _failure(block, e)
                m1 = monotonic_ns()
                if block_env:
                    # Not left to whatever the thread runs next, nor to other blocks' code that
                    # looks through the interpreter (gc) while this thread idles.
                    tls.env = None
                if cancelled:
                    cancelled.discard(key)
                if sys.stdout is not streams[0] or sys.stderr is not streams[1]:
                    restore_streams(self.running, slot)
                if home[1]:
                    restore_home(self.running, slot)
                duration = m1 - m0
                if status == RETURNED and ifs is EMPTY and items is None and capture[0] is None and capture[1] is None:
                    append((key, m0 - START_NS, duration, ret, UNCHANGED if empty_in and not backpack else backpack))
                else:
                    if forked[0]:
                        real_os_exit(0)
                    printed, logged = capture
                    capture[0] = capture[1] = None
                    append_slow(full_row(key, m0 - START_NS, duration, ret, backpack, status, ifs, captured(printed), captured(logged), failure, items))
            except (BraidTimeout, BraidCancelled) as e:
                # An interrupt that landed just after the user's code returned.
                append_slow(self.interrupted_result(key, e))
                duration = FLUSH_AFTER_NS + 1
            current[1] = None
            # A slow invocation's result goes out at once; fast ones go in batches.
            if len(out) >= FLUSH_EVERY or duration > FLUSH_AFTER_NS:
                self.flush()
            if main is None:
                main = block.main
                if native and main is not None:
                    # Loaded by this first invocation: the native loop takes the rest.
                    break
        else:
            # Whichever thread finds the shared iterator exhausted first retires the batch.
            batch.done = True
            return
        self.run_native(batch, block, main, slot, capture, timeout_ns, current)

    def run_native(self, batch, block, main, slot, capture, timeout_ns, current):
        """Runs a batch of plain invocations through the native loop (native.rs), doing here only what it
        hands back: an invocation that raised or printed, one that was cancelled, a flush."""
        out = self.out
        it = batch.it
        cancelled = self.cancelled
        # What the native loop stopped for, kept until it has been dealt with: a stray interrupt (aimed
        # at an invocation that has ended) may land anywhere here, and then it is dealt with again (a
        # result sent twice is dropped by Braid; one never sent would hang its item).
        hand = [None]
        # The loop hands back an invocation after which these are no longer sys's (as if it printed).
        sys_streams = (sys.__dict__, *streams)
        while True:
            try:
                stop = hand[0]
                if stop is None:
                    _run_plain(hand, it, main, slot, capture, cancelled, out, timeout_ns, START_NS, max(1, FLUSH_EVERY - len(out)), FLUSH_AFTER_NS, sys_streams)
                    stop = hand[0]
                why = stop[0]
                if why == NATIVE_EXHAUSTED:
                    batch.done = True
                    return
                if why == NATIVE_FLUSH:
                    self.flush()
                    hand[0] = None
                    continue
                if forked[0]:
                    real_os_exit(0)
                task = stop[1]
                if why == NATIVE_CANCELLING:
                    # The loop in loop_once stops it, as it stops any cancelled invocation.
                    self.tasks.appendleft(Batch(block, 1, iter((task,))))
                    return
                _, _, backpack, value, t0, duration = stop
                key = current[1] = task[0]
                printed, logged = capture
                if why == NATIVE_PRINTED:
                    self.slow.append(full_row(key, t0, duration, value, backpack, RETURNED, EMPTY, captured(printed), captured(logged), None))
                else:
                    if isinstance(value, (BraidTimeout, BraidCancelled)) and _stale(value, key, duration, timeout_ns, cancelled):
                        capture[0] = capture[1] = None
                        current[1] = None
                        self.tasks.appendleft(Batch(block, 1, iter((task,))))
                        return
                    try:
                        raise value
                    except BaseException as e:
                        status, failure = _failure(block, e)
                    self.slow.append(full_row(key, t0, duration, None, backpack, status, EMPTY, captured(printed), captured(logged), failure))
                    if cancelled:
                        cancelled.discard(key)
                capture[0] = capture[1] = None
                hand[0] = current[1] = None
                if sys.stdout is not streams[0] or sys.stderr is not streams[1]:
                    restore_streams(self.running, slot)
                if home[1]:
                    restore_home(self.running, slot)
                if len(out) >= FLUSH_EVERY or duration > FLUSH_AFTER_NS:
                    self.flush()
            except (BraidTimeout, BraidCancelled):
                continue

    def take(self):
        """The batch to take invocations from (None when none waits); exhausted batches are dropped and
        requests decoded on the way. Threads share a batch's iterator (`next` on it is atomic), so a thread
        that blocks in user code leaves the rest of its batch to the others."""
        tasks = self.tasks
        while True:
            try:
                batch = tasks[0]
            except IndexError:
                return None
            if batch.__class__ is bytes:
                with self.take_lock:
                    if tasks and tasks[0] is batch:
                        decoded = self.unpack(batch)
                        if decoded is None:
                            tasks.popleft()
                        else:
                            tasks[0] = decoded
                            if decoded.size > 1:
                                with self.cv:
                                    self.cv.notify(decoded.size - 1)
                continue
            if not batch.done:
                return batch
            with self.take_lock:
                if tasks and tasks[0] is batch:
                    tasks.popleft()

    def unpack(self, body):
        """Decodes a run request into a Batch; None when its program is gone (its rows say cancelled)."""
        request = native_loads(body)
        if request is None:
            request = read_request(body)
        keys = request["keys"]
        program = self.programs.get(request["program"])
        if program is None:
            # Unloaded meanwhile: its run has ended, so these were stopped before they began.
            now = monotonic_ns() - START_NS
            stopped = error("Cancelled", "the run was stopped")
            self.slow.extend(full_row(key, now, 0, None, None, CANCELLED, [], "", "", stopped) for key in keys)
            return None
        backpacks = request.get("backpacks")
        fresh = backpacks is None
        return Batch(program[request["block"]], len(keys), zip(keys, request["inputs"], itertools.repeat(FRESH) if fresh else backpacks), fresh)

    def monitor(self):
        last_completed = -1
        last_beat = monotonic_ns()
        while True:
            time.sleep(TICK_S)
            now = monotonic_ns()
            # Grow the pool while every thread is blocked (sleeping, waiting on the network): no invocation
            # finished for a whole tick, yet work waits. Compute-bound work gains nothing from more threads,
            # but loses little, since the GIL hands over every 5 ms anyway.
            completed = self.completed + len(self.out) + len(self.slow)
            if self.tasks and self.idle == 0 and completed == last_completed and self.threads < self.max_threads:
                self.spawn(min(max(self.threads, 1), self.max_threads - self.threads, len(self.tasks)))
            last_completed = completed
            if now - self.last_flush > FLUSH_AFTER_NS and (self.out or self.slow):
                self.flush()
            busy = False
            for ident, slot in list(self.running.items()):
                key, started, timeout_ns, interrupted = slot
                if key is None:
                    continue
                busy = True
                if interrupted is None:
                    # Still the same invocation (the slot is refilled in one step for the next one).
                    if now - started > timeout_ns and slot[0] is key and slot[1] == started:
                        slot[3] = now
                        _async_raise(ident, BraidTimeout)
                elif now - interrupted > GRACE_NS:
                    slot[3] = float("inf")
                    # Python can't stop it (a C call, a sleep): the parent kills this process.
                    self.send(stuck(key))
            if busy and now - last_beat > BEAT_NS:
                last_beat = now
                self.send(beat())

    def interrupted_result(self, key, exc):
        now = monotonic_ns() - START_NS
        capture = tls.capture
        capture[0] = capture[1] = None
        slot = self.running.get(get_ident())
        if slot is not None:
            slot[0] = None
        if isinstance(exc, BraidTimeout):
            return full_row(key, now, 0, None, None, TIMED_OUT, [], "", "", error("Timeout", "ran past its timeout"))
        return full_row(key, now, 0, None, None, CANCELLED, [], "", "", error("Cancelled", "the run was stopped"))

    def load_main(self, block):
        with block.lock:
            if block.main is not None:
                return block.main
            if block.load_error is not None:
                raise block.load_error
            module = types.ModuleType(block.module_name)
            module.__file__ = block.filename
            sys.modules[block.module_name] = module
            scope = module.__dict__
            try:
                exec(block.code, scope)
                main = scope.get("main")
                if not callable(main):
                    raise NameError("the block defines no main(block_input, backpack) function")
                if getattr(getattr(main, "__code__", None), "co_flags", 0) & 0x80:
                    # CO_COROUTINE: an `async def main` (inspect would cost the worker's start more).
                    main = _awaited(main)
            except (BraidTimeout, BraidCancelled):
                # Stopped, not failed: the block's module code runs again with its next invocation,
                # which must not inherit this one's timeout.
                raise
            except BaseException as e:
                block.load_error = e
                raise
            block.main = main
            return main


class ItemNamer:
    """A fan-out's item key and label expressions, each compiled into one list comprehension over the
    returned items (`item`, `index`, and `return_data`, `backpack`, `block_input` as `if` expressions
    have them): a fan-out of 100,000 items evaluates each expression once, not 100,000 times. A key
    that is not text becomes its JSON (`17` → `"17"`); a label becomes `str(label)`."""

    __slots__ = ("key", "label", "sources", "problems", "target")

    def __init__(self, filename, index, spec):
        self.target = spec.get("target", "")
        self.problems = []
        self.sources = {}
        self.key = self.compile(filename, index, "key", spec.get("key", ""))
        self.label = self.compile(filename, index, "label", spec.get("label", ""))

    def compile(self, filename, index, what, expr):
        """The whole list's code (None without an expression, or when it does not compile)."""
        if not expr.strip():
            return None
        where = f"{filename} (item {what} of fan-out #{index + 1})"
        try:
            # Alone first: only an expression passes, so nothing can close the comprehension around it.
            alone = compile(expr, where, "eval")
            # `enumerate` only for an expression that reads `index`: its tuples cost a tenth.
            over = "index, item in enumerate(return_data)" if _reads(alone, "index") else "item in return_data"
            code = compile(f"[({expr}) for {over}]", where, "eval")
        except SyntaxError as e:
            self.problems.append(f"item {what} expression {expr!r}: SyntaxError: {e.msg}")
            return None
        except Exception as e:
            self.problems.append(f"item {what} expression {expr!r}: {_not_compiled(e)}")
            return None
        self.sources[what] = (expr, where)
        return code

    def names(self, items, backpack, block_input):
        """[keys, labels] of the items (each None without its expression). An expression that raises
        raises again, naming the fan-out and the item."""
        scope = {"return_data": items, "backpack": backpack, "block_input": block_input, "lambda_input": block_input}
        keys = labels = None
        if self.key is not None:
            keys = self.evaluate("key", self.key, scope)
            if list(map(type, keys)).count(str) != len(keys):
                keys = [k if k.__class__ is str else _key_text(k) for k in keys]
        if self.label is not None:
            labels = self.evaluate("label", self.label, scope)
            if list(map(type, labels)).count(str) != len(labels):
                labels = [label if label.__class__ is str else str(label) for label in labels]
        return [keys, labels]

    def evaluate(self, what, code, scope):
        try:
            return eval(code, scope)
        except (BraidTimeout, BraidCancelled):
            raise
        except BaseException as e:
            # Again item by item, to say which item it was (only when it failed).
            expr, where = self.sources[what]
            single = compile(expr, where, "eval")
            for index, item in enumerate(scope["return_data"]):
                try:
                    eval(single, {**scope, "item": item, "index": index})
                except BaseException as failed:
                    failed.add_note(f"(in the item {what} expression of the fan-out to {self.target!r}, item {index})")
                    raise
            raise e


def _reads(code, name):
    """Whether compiled code (or code nested in it: a lambda, a comprehension) reads `name`."""
    return name in code.co_names or name in code.co_freevars or any(_reads(const, name) for const in code.co_consts if isinstance(const, types.CodeType))


def _key_text(key):
    """A key that is not text, as text: its JSON (`17`, `[1, "a"]`), or `str` when it has none."""
    try:
        return fast_json(key).decode()
    except (TypeError, ValueError, RecursionError):
        return str(key)


def _awaited(main):
    """An `async def main` runs to completion in an event loop of its own, on its invocation's thread
    (a timeout or a stop lands in the loop like anywhere else)."""
    import asyncio

    @functools.wraps(main)
    def run(block_input, backpack):
        return asyncio.run(main(block_input, backpack))

    return run


def _not_compiled(exc):
    """Why Python could not compile a block's code when it raised something other than SyntaxError:
    nesting past its parser's limits (MemoryError, RecursionError), a NUL in the code or in the block's
    name (ValueError)."""
    text = str(exc) or "the code is nested deeper than Python's parser can go"
    return f"Python can't compile it: {type(exc).__name__}: {text}"


def _stale(exc, key, duration, timeout_ns, cancelled):
    """Whether an interrupt that stopped invocation `key` was meant for the one before it on the thread:
    the monitor raises a timeout only past the timeout, and a cancel only for a cancelled key. (It
    checks the slot, then raises a few bytecodes later, by when that invocation may have ended.)"""
    if isinstance(exc, BraidTimeout):
        return duration < timeout_ns
    return key not in cancelled


def _main_signature_problem(node):
    """Why Braid's call main(block_input, backpack) would fail on every invocation, from the definition
    alone (no code runs to check it), or None. A decorated main is taken as it is: the decorator may
    change what it takes."""
    if node.decorator_list:
        return None
    args = node.args
    positional = len(args.posonlyargs) + len(args.args)
    required = positional - len(args.defaults)
    keyword_only = [a.arg for a, default in zip(args.kwonlyargs, args.kw_defaults) if default is None]
    shown = f"main({ast.unparse(args)})"
    if required > 2:
        return f"{shown} needs {required} arguments, but Braid passes two: main(block_input, backpack)"
    if positional < 2 and args.vararg is None:
        return f"{shown} takes {('no', 'one')[positional]} argument{'s' if positional == 0 else ''}, but Braid passes two: main(block_input, backpack)"
    if keyword_only:
        return f"{shown} needs the keyword argument {keyword_only[0]}, which Braid does not pass"
    return None


def _failure(block, exc):
    """The status and error of an invocation that raised `exc` (called inside its except block)."""
    if isinstance(exc, BraidTimeout):
        text = f"ran past its timeout of {block.timeout_s:g} s"
        # The traceback shows where the code was when it was stopped; its last line names Braid's
        # internal exception, so say what happened instead.
        trace = _format_tb().rstrip("\n").rsplit("\n", 1)[0]
        return TIMED_OUT, error("Timeout", text, f"{trace}\nTimeout: {text}\n", _user_line(block))
    if isinstance(exc, BraidCancelled):
        return CANCELLED, error("Cancelled", "the run was stopped")
    if isinstance(exc, SystemExit):
        return RAISED, error("SystemExit", f"the code called sys.exit({exc.code!r})", _format_tb(), _user_line(block))
    text = str(exc)
    # Notes say where it happened when the traceback alone can't (an item key expression: which item).
    notes = getattr(exc, "__notes__", None)
    if notes:
        text = " ".join([text, *(str(note) for note in notes)])
    # A missing package (not a missing submodule of one that is there): blocks don't see what is
    # installed beside the interpreter (the worker starts without `site`), so the likely fix is the one
    # Refinery asked for too.
    if isinstance(exc, ModuleNotFoundError) and exc.name and exc.name.partition(".")[0] not in sys.modules:
        text += " (a block imports the standard library and its project's libraries only: add the package that provides it to the block's Libraries)"
    return RAISED, error(type(exc).__name__, text, _format_tb(), _user_line(block))


def _async_raise(ident, exc_type):
    import ctypes  # Here rather than as the worker starts: only timeouts and cancels need it.

    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exc_type))


# The folder of this package's files: their frames are the worker's, not the block's.
_PACKAGE_DIR = os.path.dirname(__file__)


def _format_tb():
    """The traceback without the worker's own frames (those that called the block, and those of
    os.environ's and sys.stdout's stand-ins inside it), in chained exceptions too: what plain Python
    would show for the block's code."""
    import traceback  # Here rather than as the worker starts: only failures need it.

    top = traceback.TracebackException(*sys.exc_info())
    todo, seen = [top], set()
    while todo:
        te = todo.pop()
        if id(te) in seen:
            continue
        seen.add(id(te))
        te.stack = traceback.StackSummary.from_list([f for f in te.stack if os.path.dirname(f.filename) != _PACKAGE_DIR])
        todo.extend(t for t in (te.__cause__, te.__context__) if t is not None)
        todo.extend(getattr(te, "exceptions", None) or ())
    return "".join(top.format())


def _user_line(block):
    """The deepest line of the failing block's own code in the current traceback."""
    tb = sys.exc_info()[2]
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == block.filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def main(executable=None):
    """The worker, on this process's stdin and stdout, until Braid goes away."""
    import faulthandler

    # The interpreter Braid embeds, as a program: what user code starts as `sys.executable` must be the
    # same Python (not whichever `python3` is first on PATH).
    if executable and os.path.exists(executable):
        sys.executable = executable
    # What `site` gives every program and the worker, started without it, must give itself: `exit()`,
    # `quit()`, `help()`, `copyright`, `credits`, `license`.
    site.setquit()
    site.setcopyright()
    site.sethelper()

    # A segfault in user code prints where it happened to stderr, which the parent keeps to explain it.
    faulthandler.enable(file=sys.__stderr__, all_threads=True)
    fd_in = os.dup(0)
    fd_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdin = open(os.devnull)  # noqa: SIM115 (sys.stdin for the worker's life)
    streams[:] = (STDOUT, STDERR)
    sys.stdout, sys.stderr = streams
    # Laid over the process environment, which stays as it is (child processes inherit it).
    os.environ = isolation.BlockEnviron(os.environ)  # noqa: B003
    isolation.inherit_invocations()
    isolation.capture_subprocesses()
    isolation.track_chdir()
    isolation.start_modules_dir()
    worker = Worker(fd_in, fd_out)

    def _exit(code):
        if forked[0] or not isinstance(code, int) or not -(2**31) <= code < 2**31:
            # A child the block forked: nothing of the worker's is its to send. A code os._exit does
            # not take: it raises, as it would anyway.
            real_os_exit(code)
        # The invocation running on this thread, if the call came from one.
        slot = worker.running.get(threading.get_ident())
        key = slot[0] if slot is not None else None
        try:
            # Results that finished here and wait for their batch go out first: the parent would
            # otherwise run them again on a fresh worker, repeating what they did.
            worker.flush()
            if key is not None:
                worker.send(exiting(key, int(code)))
        except BaseException:
            pass
        real_os_exit(code)

    os._exit = _exit
    os.register_at_fork(after_in_child=isolation.after_fork_in_child)
    worker.serve()
    if isolation.modules_dir[0] is not None:
        isolation.remove_modules_dir(isolation.modules_dir[0])
    # Braid is done with this worker, or gone (killed: it had no chance to end the worker itself).
    # Whatever the blocks started and left running ends with the worker: it leads its own group.
    if os.getpgrp() == os.getpid():
        import signal

        os.killpg(0, signal.SIGKILL)
    real_os_exit(0)
