# Braid's Python worker: runs Code Block invocations for the Braid process that started it.
#
# Protocol: frames of a 4-byte little-endian length and a JSON body, requests on fd 0, replies on fd 1.
# User code never sees those descriptors: fd 0 becomes /dev/null and fd 1 a copy of stderr, and
# sys.stdout/sys.stderr capture per invocation (per thread).
#
# Requests:  {"op": "load", "program": P, "blocks": [{"name", "code", "ifs": [expr...], "timeout_s", "env": {...}} ...],
#             "site_packages": S or null, "cwd": D or null, "compile_only": true (only a check: left out)}
#            {"op": "run", "program": P, "block": B, "keys": [...], "inputs": [...], "backpacks": [...]}
#              ("fresh": 1 instead of "backpacks": each invocation gets an empty backpack of its own)
#            {"op": "cancel", "keys": [...]}   {"op": "unload", "program": P}
# Replies:   {"op": "loaded", "program": P, "errors": [[block, what, line, message], ...]}
#            a results frame, binary (below)
#            {"op": "exiting", "key": K, "code": C}   (user code called os._exit)
#            {"op": "stuck", "key": K}                (a timed-out invocation ignored the interrupt)
#            {"op": "beat"}                           (alive, while invocations run)
# Results frame: b"R", then little-endian u64 T (this worker's start, wall-clock µs) and u32 n, then the n
# invocations that returned, printed nothing and have no `if`s (most of a big fan-out) as columns: n i64
# keys, n i64 t0, n i64 durations, then three u32-length-prefixed JSON texts: their n return values; their
# backpacks (0 when all are unchanged, else n values); the other invocations' rows
# [key, t0, duration, return, backpack, status, ifs, stdout, stderr, error].
# Integer columns cost next to nothing to write and read; JSON is kept for values.
# backpack 0: the empty backpack it was given, still empty (saves encoding it back).
# status: 0 returned, 1 raised, 2 timed out, 3 cancelled.  error: [type, message, traceback, line].
# t0: nanoseconds since T; duration: nanoseconds (integers, exact and cheap to pack).
import array
import ast
import collections
import collections.abc
import functools
import importlib
import io
import itertools
import json
import linecache
import os
import site
import struct
import sys
import threading
import time
import types

OK, RAISED, TIMED_OUT, CANCELLED = 0, 1, 2, 3
RUN_PREFIX = b'{"op":"run",'
EMPTY = ()
get_ident = threading.get_ident
monotonic_ns = time.monotonic_ns
# One clock read per timestamp, relative to the worker's start (sent as wall-clock time with each reply).
START_NS = time.monotonic_ns()
START_WALL_US = time.time_ns() // 1000
UNCHANGED = 0
FRESH = object()
FLUSH_EVERY = 256
FLUSH_AFTER_NS = 2_000_000
TICK_S = 0.005
GRACE_NS = 1_000_000_000
BEAT_NS = 1_000_000_000
# The most printed text kept per invocation and stream (characters). A print in a runaway loop would
# otherwise fill memory until the timeout, then take seconds to send; the first part is what explains
# the loop anyway.
CAPTURE_LIMIT = 1 << 20


try:
    # The hot loop for plain invocations, in Rust (src/runtime/worker/native.rs); absent when this file
    # runs in a plain Python (its tests), where the loop below does everything.
    from braid_native import run_plain as _run_plain, to_json as _native_json, from_json as _native_loads
    from braid_native import short_frame as _native_short_frame
except ImportError:
    _run_plain = None
    _native_json = _native_loads = lambda value: None  # noqa: E731 (Python's json does it all)
    _native_short_frame = lambda rows, start: None  # noqa: E731
# Why _run_plain returned (native.rs).
N_EXHAUSTED, N_FLUSH, N_RAISED, N_PRINTED, N_CANCELLING = 0, 1, 2, 3, 4


class BraidTimeout(BaseException):
    """Raised inside an invocation that ran past its block's timeout_s (BaseException: `except Exception` in user code must not swallow it)."""


class BraidCancelled(BaseException):
    """Raised inside an invocation whose run was stopped."""


_tls = threading.local()
_real_stderr = sys.__stderr__


class _Capture(io.TextIOBase):
    """sys.stdout/sys.stderr: each invocation's thread collects its own printed text. A text stream in
    full (`buffer`, `reconfigure`, `fileno` raising io.UnsupportedOperation as StringIO's does...), so
    code written for a terminal runs unchanged; it can't be closed, since later invocations print to it."""

    def __init__(self, index):
        super().__init__()
        self._index = index
        self._buffer = _CaptureBytes(self)

    def write(self, text):
        capture = getattr(_tls, "capture", None)
        if capture is None:
            return _real_stderr.write(text)
        owner = getattr(_tls, "owner", None)
        if owner is not None and owner[2][0] != owner[3]:
            # A thread an invocation started, printing after that invocation ended.
            return _real_stderr.write(text)
        # [characters written so far, kept pieces...]
        buf = capture[self._index]
        if buf is None:
            buf = capture[self._index] = [0]
        n = len(text)
        room = CAPTURE_LIMIT - buf[0]
        if n <= room:
            buf.append(text)
        elif room > 0:
            buf.append(text[:room])
        buf[0] += n
        return n

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def writable(self):
        return True

    def flush(self):
        pass

    def close(self):
        pass

    def isatty(self):
        return False

    def reconfigure(self, **_settings):
        """Always UTF-8 and kept per invocation: there is nothing to change."""

    @property
    def encoding(self):
        return "utf-8"

    @property
    def errors(self):
        return "strict"

    @property
    def line_buffering(self):
        return True

    @property
    def name(self):
        return ("<stdout>", "<stderr>")[self._index]

    @property
    def buffer(self):
        return self._buffer


class _CaptureBytes(io.RawIOBase):
    """sys.stdout.buffer: bytes written go to the invocation's printed text, decoded as UTF-8."""

    def __init__(self, text):
        super().__init__()
        self._text = text

    def writable(self):
        return True

    def write(self, data):
        data = bytes(data)
        self._text.write(data.decode("utf-8", "replace"))
        return len(data)

    def close(self):
        pass


# Where each loaded block's code is also a module file (see _publish_module), once the worker has started.
_modules_dir = [None]


def _start_modules_dir():
    """A folder of this worker's own on sys.path, for block modules that child processes import: a
    multiprocessing "spawn" or "forkserver" child (the default on macOS, and on Linux from Python
    3.14) unpickles a block's functions by importing the block's module, which otherwise hung its pool.
    Folders of workers that are gone (killed, so never cleaned up) are removed first. (os alone, not
    tempfile and shutil: they would add milliseconds to every worker's start.)"""
    prefix = "braid-blocks-"
    base = os.environ.get("TMPDIR") or "/tmp"
    try:
        for name in os.listdir(base):
            if name.startswith(prefix):
                pid = name[len(prefix):].split("-", 1)[0]
                if pid.isdigit() and not _alive(int(pid)):
                    _remove_modules_dir(os.path.join(base, name))
        path = os.path.join(base, f"{prefix}{os.getpid()}-{os.urandom(4).hex()}")
        os.mkdir(path, 0o700)
        _modules_dir[0] = path
        # Last: a block module must never shadow a library (multiprocessing hands sys.path to children).
        sys.path.append(path)
    except OSError:
        pass


def _remove_modules_dir(path):
    """Removes a modules folder and what is in it: the module files, and the __pycache__ that a child
    Python importing them may have written."""
    try:
        for entry in os.scandir(path):
            if entry.is_dir(follow_symlinks=False):
                _remove_modules_dir(entry.path)
            else:
                os.unlink(entry.path)
        os.rmdir(path)
    except OSError:
        pass


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _publish_module(block, code):
    """Writes `block`'s code as its module's file in the worker's folder (see _start_modules_dir)."""
    if _modules_dir[0] is None:
        return
    try:
        with open(os.path.join(_modules_dir[0], f"{block.module_name}.py"), "w", encoding="utf-8") as f:
            f.write(code)
    except OSError:
        pass


def _unpublish_module(block):
    if _modules_dir[0] is None:
        return
    try:
        os.unlink(os.path.join(_modules_dir[0], f"{block.module_name}.py"))
    except OSError:
        pass


# The folder blocks run in (the project's), and whether a block has moved the worker out of it.
_home = [None, False]
_real_chdir = os.chdir


def _track_chdir():
    """os.chdir and os.fchdir as blocks see them: a block that moves the worker's working folder (to run
    a tool somewhere, say) takes the rest of the worker's invocations along; noted here, it is moved
    back when that invocation ends (see _restore_home)."""
    for name in ("chdir", "fchdir"):
        real = getattr(os, name)

        def moved(path, _real=real):
            _real(path)
            _home[1] = True
            capture = getattr(_tls, "capture", None)
            if capture is not None and capture[0] is None:
                # As if it printed: the invocation's end then goes through worker.py's Python.
                capture[0] = [0]

        setattr(os, name, moved)


def _restore_home(running, slot):
    """Back to the project's folder once the invocation that moved away has ended, unless another one is
    running (it may rely on being where it moved)."""
    if _home[0] is None or any(other is not slot and other[0] is not None for other in list(running.values())):
        return
    _home[1] = False
    try:
        _real_chdir(_home[0])
    except OSError:
        pass


def _restore_streams(running, slot):
    """A block that reassigned sys.stdout or sys.stderr and did not put it back would take the printed
    output of every later invocation on this worker with it: Braid's go back once its invocation has
    ended, unless another one is running (it may be inside a `redirect_stdout` of its own)."""
    out, err = _streams
    if (sys.stdout is not out or sys.stderr is not err) and not any(
        other is not slot and other[0] is not None for other in list(running.values())
    ):
        sys.stdout = out
        sys.stderr = err


_STDOUT = _Capture(0)
_STDERR = _Capture(1)
_real_os_exit = os._exit
# True in a child process a block forked (os.fork without exec, a multiprocessing "fork" child).
_forked = False


def _after_fork_in_child():
    """A child a block forked must not go on as the worker (running the rest of the batch again, sending
    results): when the block returns or raises in it, the child ends there, as if by os._exit(0)."""
    global _forked
    _forked = True
    capture = getattr(_tls, "capture", None)
    if capture is not None and capture[0] is None:
        # As if it printed: the block's return then goes through worker.py's Python, which ends it.
        capture[0] = [0]


# The streams invocations print to: Braid's once the worker has started (main), those of the process
# that imported this file until then (the tests that drive the worker's loop).
_streams = (sys.stdout, sys.stderr)


class Block:
    __slots__ = ("name", "filename", "code", "ifs", "timeout_s", "timeout_ns", "env", "main", "load_error", "lock", "module_name")

    def __init__(self, name, filename, code, ifs, timeout_s, env, module_name):
        self.name = name
        self.filename = filename
        self.code = code
        self.ifs = ifs
        self.timeout_s = timeout_s
        self.timeout_ns = int(timeout_s * 1e9)
        self.env = env
        self.main = None
        self.load_error = None
        self.lock = threading.Lock()
        # The block's code runs as this module, registered in sys.modules: pickle finds the functions it
        # defines there (multiprocessing.Pool sends them to its processes by name).
        self.module_name = module_name


class Worker:
    def __init__(self, fd_in, fd_out):
        self.fd_in = fd_in
        self.fd_out = fd_out
        self.programs = {}
        # Run frames as they arrived (bytes), decoded in place into a Batch by the first thread to reach them.
        self.tasks = collections.deque()
        self.take_lock = threading.Lock()
        # Result rows: appending to a deque is atomic, so exec threads append without a lock. `out` holds
        # the short rows (key, t0, duration, return, backpack), `slow` the full ones.
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

    # ----- framing -----
    def read_exact(self, n):
        chunks = []
        while n:
            chunk = os.read(self.fd_in, n)
            if not chunk:
                return None
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def send_raw(self, body):
        with self.write_lock:
            data = len(body).to_bytes(4, "little") + body
            view = memoryview(data)
            while view:
                written = os.write(self.fd_out, view)
                view = view[written:]

    def send(self, obj):
        self.send_raw(json.dumps(obj, separators=(",", ":")).encode())

    def flush(self):
        with self.flush_lock:
            out, slow = self.out, self.slow
            if not out and not slow:
                return
            popleft = out.popleft
            rows = [popleft() for _ in range(len(out))]
            popleft = slow.popleft
            slow_rows = [popleft() for _ in range(len(slow))]
            self.last_flush = monotonic_ns()
            self.completed += len(rows) + len(slow_rows)
            self.send_raw(self.results_frame(rows, slow_rows))

    def results_frame(self, rows, slow_rows):
        """The binary results frame (see the top of this file) for short rows and full rows."""
        head = _native_short_frame(rows, START_WALL_US)
        if head is not None:
            rest = self.encode(slow_rows)
            return b"".join((head, struct.pack("<I", len(rest)), rest))
        try:
            rets = _fast_json([row[3] for row in rows])
            backpacks = [row[4] for row in rows]
            backpacks = b"0" if backpacks.count(UNCHANGED) == len(backpacks) else _fast_json(backpacks)
        except (TypeError, ValueError, RecursionError):
            # Some value is not JSON: find the rows it is in (checked), and let them fail alone.
            good = []
            for row in rows:
                try:
                    _json(row)
                    good.append(row)
                except (TypeError, ValueError, RecursionError) as e:
                    slow_rows.append(_unencodable(row, e))
            return self.results_frame(good, slow_rows)
        if rows:
            keys, t0s, durations, _, _ = zip(*rows)
            columns = array.array("q", keys + t0s + durations)
            if sys.byteorder != "little":
                columns.byteswap()
            columns = columns.tobytes()
        else:
            columns = b""
        rest = self.encode(slow_rows)
        return b"".join((
            b"R", struct.pack("<QI", START_WALL_US, len(rows)), columns,
            struct.pack("<I", len(rets)), rets,
            struct.pack("<I", len(backpacks)), backpacks,
            struct.pack("<I", len(rest)), rest,
        ))

    # ----- requests -----
    def serve(self):
        threading.Thread(target=self.monitor, name="braid-monitor", daemon=True).start()
        self.spawn(1)
        while True:
            header = self.read_exact(4)
            if header is None:
                return
            body = self.read_exact(int.from_bytes(header, "little"))
            if body is None:
                return
            if body.startswith(RUN_PREFIX):
                # Decoded by the thread that picks it up: this thread only hands bytes over, so it
                # holds the interpreter lock for as short a time as it can.
                self.tasks.append(body)
                with self.cv:
                    self.cv.notify()
                continue
            msg = json.loads(body)
            op = msg["op"]
            if op == "load":
                self.load(msg["program"], msg["blocks"], msg.get("site_packages"), msg.get("cwd"), msg.get("compile_only", False))
            elif op == "cancel":
                self.cancel(msg["keys"])
            elif op == "unload":
                for block in self.programs.pop(msg["program"], ()):
                    sys.modules.pop(block.module_name, None)
                    _unpublish_module(block)
            elif op == "exit":
                return

    def load(self, program_id, blocks, site_packages=None, cwd=None, compile_only=False):
        if cwd:
            try:
                _real_chdir(cwd)
                _home[0] = cwd
            except OSError:
                # Gone or unreadable: the code runs where the worker is, as for an unsaved project.
                pass
        if site_packages and site_packages not in sys.path:
            # Where `site` would put them: after the standard library (a backport must not shadow the
            # module it backports), before the block modules (which must not shadow a library).
            before = [p for p in sys.path if p != _modules_dir[0]]
            site.addsitedir(site_packages)
            added = [p for p in sys.path if p not in before and p != _modules_dir[0]]
            sys.path[:] = before + added + ([_modules_dir[0]] if _modules_dir[0] in sys.path else [])
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
                        _publish_module(block, code)
                    tree = ast.parse(code, filename)
                    mains = [node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "main"]
                    if not mains:
                        errors.append([index, "code", None, "defines no main(block_input, backpack) function"])
                    elif (problem := _main_signature_problem(mains[-1])) is not None:
                        errors.append([index, "code", mains[-1].lineno, problem])
                except SyntaxError as e:
                    errors.append([index, "code", e.lineno, f"{type(e).__name__}: {e.msg}"])
            for if_index, expr in enumerate(spec.get("ifs", [])):
                try:
                    block.ifs.append(compile(expr, f"{filename} (if #{if_index + 1})", "eval"))
                except SyntaxError as e:
                    block.ifs.append(None)
                    errors.append([index, f"if:{if_index}", None, f"if expression {expr!r}: SyntaxError: {e.msg}"])
            compiled.append(block)
        self.programs[program_id] = compiled
        self.send({"op": "loaded", "program": program_id, "errors": errors})

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
        _tls.capture = [None, None]
        slot = [None, 0, 0, None]
        _tls.slot = slot
        # An exec thread started while an invocation ran belongs to no invocation.
        _tls.owner = _tls.env = None
        self.running[get_ident()] = slot
        while True:
            try:
                self.loop_once(slot)
            except (BraidTimeout, BraidCancelled):
                # A stray interrupt aimed at an invocation that had just finished: nothing to stop.
                pass

    def loop_once(self, slot):
        """Runs invocations until the thread is interrupted. The hot path of a big fan-out: everything an
        invocation needs is a local here, and only what the user's code may observe is set per call."""
        tls = _tls
        capture = tls.capture
        out = self.out
        append = out.append
        append_slow = self.slow.append
        cancelled = self.cancelled
        with_env = False
        while True:
            batch = self.take()
            if batch is None:
                self.flush()
                with self.cv:
                    if self.tasks:
                        continue
                    self.idle += 1
                    self.cv.wait()
                    self.idle -= 1
                continue
            block = batch.block
            main = block.main
            block_ifs = block.ifs
            block_env = block.env
            timeout_ns = block.timeout_ns
            if not block_env and with_env:
                tls.env = None
                with_env = False
            native = batch.fresh and not block_ifs and not block_env and _run_plain is not None
            if native and main is not None:
                self.run_native(batch, block, main, slot, capture, timeout_ns)
                continue
            for task in batch.it:
                try:
                    key, block_input, backpack = task
                    if backpack is FRESH:
                        backpack = {}
                        empty_in = True
                    else:
                        empty_in = backpack.__class__ is dict and not backpack
                    # Each invocation gets its own copy of its block's variables (see _BlockEnviron).
                    if block_env:
                        tls.env = dict(block_env)
                        with_env = True
                    ret = None
                    ifs = EMPTY
                    error = None
                    m0 = monotonic_ns()
                    slot[:] = (key, m0, timeout_ns, None)
                except (BraidTimeout, BraidCancelled):
                    # An interrupt aimed at the invocation before, raised just as it ended, landed
                    # before this one began: this one runs after all, from the front of the queue.
                    slot[0] = None
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
                        finally:
                            # Cleared before an interrupt can land outside the user's code.
                            slot[0] = None
                        status = OK
                    except BaseException as e:
                        status, error = _failure(block, e)
                    m1 = monotonic_ns()
                    if cancelled:
                        cancelled.discard(key)
                    if sys.stdout is not _streams[0] or sys.stderr is not _streams[1]:
                        _restore_streams(self.running, slot)
                    if _home[1]:
                        _restore_home(self.running, slot)
                    duration = m1 - m0
                    if status == OK and ifs is EMPTY and capture[0] is None and capture[1] is None:
                        append((key, m0 - START_NS, duration, ret, UNCHANGED if empty_in and not backpack else backpack))
                    else:
                        if _forked:
                            _real_os_exit(0)
                        printed, logged = capture
                        capture[0] = capture[1] = None
                        append_slow([key, m0 - START_NS, duration, ret, backpack, status, ifs, _captured(printed), _captured(logged), error])
                except (BraidTimeout, BraidCancelled) as e:
                    # An interrupt that landed just after the user's code returned.
                    append_slow(self.interrupted_result(key, e))
                    duration = FLUSH_AFTER_NS + 1
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
                continue
            self.run_native(batch, block, main, slot, capture, timeout_ns)

    def run_native(self, batch, block, main, slot, capture, timeout_ns):
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
        streams = (sys.__dict__, *_streams)
        while True:
            try:
                stop = hand[0]
                if stop is None:
                    _run_plain(hand, it, main, slot, capture, cancelled, out, timeout_ns, START_NS, max(1, FLUSH_EVERY - len(out)), FLUSH_AFTER_NS, streams)
                    stop = hand[0]
                why = stop[0]
                if why == N_EXHAUSTED:
                    batch.done = True
                    return
                if why == N_FLUSH:
                    self.flush()
                    hand[0] = None
                    continue
                if _forked:
                    _real_os_exit(0)
                task = stop[1]
                if why == N_CANCELLING:
                    # The loop in loop_once stops it, as it stops any cancelled invocation.
                    self.tasks.appendleft(Batch(block, 1, iter((task,))))
                    return
                _, _, backpack, value, t0, duration = stop
                key = task[0]
                printed, logged = capture
                if why == N_PRINTED:
                    self.slow.append([key, t0, duration, value, backpack, OK, EMPTY, _captured(printed), _captured(logged), None])
                else:
                    if isinstance(value, (BraidTimeout, BraidCancelled)) and _stale(value, key, duration, timeout_ns, cancelled):
                        capture[0] = capture[1] = None
                        self.tasks.appendleft(Batch(block, 1, iter((task,))))
                        return
                    try:
                        raise value
                    except BaseException as e:
                        status, error = _failure(block, e)
                    self.slow.append([key, t0, duration, None, backpack, status, EMPTY, _captured(printed), _captured(logged), error])
                    if cancelled:
                        cancelled.discard(key)
                capture[0] = capture[1] = None
                hand[0] = None
                if sys.stdout is not _streams[0] or sys.stderr is not _streams[1]:
                    _restore_streams(self.running, slot)
                if _home[1]:
                    _restore_home(self.running, slot)
                if len(out) >= FLUSH_EVERY or duration > FLUSH_AFTER_NS:
                    self.flush()
            except (BraidTimeout, BraidCancelled):
                continue

    def take(self):
        """The batch to take invocations from (None when none waits); exhausted batches are dropped and
        frames decoded on the way. Threads share a batch's iterator (`next` on it is atomic), so a thread
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

    def unpack(self, frame):
        """Decodes a run frame into a Batch; None when its program is gone (its rows say cancelled)."""
        msg = _native_loads(frame)
        if msg is None:
            msg = json.loads(frame)
        keys = msg["keys"]
        program = self.programs.get(msg["program"])
        if program is None:
            # Unloaded meanwhile: its run has ended, so these were stopped before they began.
            now = monotonic_ns() - START_NS
            stopped = ["Cancelled", "the run was stopped", "", None]
            self.slow.extend([key, now, 0, None, None, CANCELLED, [], "", "", stopped] for key in keys)
            return None
        backpacks = msg.get("backpacks")
        return Batch(program[msg["block"]], len(keys), zip(keys, msg["inputs"], itertools.repeat(FRESH) if backpacks is None else backpacks), backpacks is None)

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
                    self.send({"op": "stuck", "key": key})
            if busy and now - last_beat > BEAT_NS:
                last_beat = now
                self.send({"op": "beat"})

    def encode(self, rows):
        """One JSON text (UTF-8) for a batch of full result rows. Printed text and error messages with
        text that is not Unicode are shown with U+FFFD in its place; a row whose value can't be
        encoded fails alone."""
        try:
            return _fast_json(rows)
        except (TypeError, ValueError, RecursionError):
            pass
        parts = []
        for row in rows:
            try:
                parts.append(_json(row))
                continue
            except UnicodeEncodeError:
                row = _clean_texts(row)
            except (TypeError, ValueError, RecursionError) as e:
                parts.append(_json(_unencodable(row, e)))
                continue
            try:
                parts.append(_json(row))
            except (TypeError, ValueError, RecursionError) as e:
                parts.append(_json(_unencodable(row, e)))
        return b"[" + b",".join(parts) + b"]"

    def interrupted_result(self, key, exc):
        now = monotonic_ns() - START_NS
        capture = _tls.capture
        capture[0] = capture[1] = None
        slot = self.running.get(get_ident())
        if slot is not None:
            slot[0] = None
        if isinstance(exc, BraidTimeout):
            return [key, now, 0, None, None, TIMED_OUT, [], "", "", ["Timeout", "ran past its timeout", "", None]]
        return [key, now, 0, None, None, CANCELLED, [], "", "", ["Cancelled", "the run was stopped", "", None]]

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


def _awaited(main):
    """An `async def main` runs to completion in an event loop of its own, on its invocation's thread
    (a timeout or a stop lands in the loop like anywhere else)."""
    import asyncio

    @functools.wraps(main)
    def run(block_input, backpack):
        return asyncio.run(main(block_input, backpack))

    return run


def _inherit_invocations():
    """Threads that an invocation starts (a ThreadPoolExecutor calling an API, say) belong to it: they see
    its block's variables in os.environ, and what they print is the invocation's printed output (until
    it ends; after that it goes to the worker's stderr, see docs/runtime.md)."""
    thread_init = threading.Thread.__init__
    bootstrap_inner = threading.Thread._bootstrap_inner

    def __init__(self, *args, **kwargs):
        thread_init(self, *args, **kwargs)
        tls = _tls
        owner = getattr(tls, "owner", None)
        if owner is None:
            slot = getattr(tls, "slot", None)
            if slot is not None and slot[0] is not None:
                owner = (tls.capture, getattr(tls, "env", None), slot, slot[0])
        self._braid_owner = owner

    def _bootstrap_inner(self):
        owner = getattr(self, "_braid_owner", None)
        if owner is not None:
            _tls.capture, _tls.env, _tls.owner = owner[0], owner[1], owner
        bootstrap_inner(self)

    threading.Thread.__init__ = __init__
    threading.Thread._bootstrap_inner = _bootstrap_inner


def _capture_subprocesses():
    """What a subprocess an invocation starts writes to the stdout and stderr it inherits is that
    invocation's printed output, in order with its own prints (a tool's error message is often the
    "why"): each such stream gets a pipe of its own, read by a thread that belongs to the invocation
    (see _inherit_invocations), and waiting for the process waits for its output too. Streams the
    caller chose (PIPE, a file, DEVNULL) are left alone. os.system goes the same way (through a shell,
    as it does, returning the same wait status). subprocess is patched when something first imports
    it: importing it took several milliseconds of every worker's start, and most blocks never use it."""

    def system(command):
        import subprocess

        code = subprocess.Popen(command, shell=True).wait()
        # os.system's wait status: the exit code in the high byte, or the signal that ended the shell.
        return code << 8 if code >= 0 else -code

    os.system = system
    if "subprocess" in sys.modules:
        _patch_subprocess(sys.modules["subprocess"])
    else:
        sys.meta_path.insert(0, _WhenImported("subprocess", _patch_subprocess))


class _WhenImported:
    """A finder that lets the usual finders find one module, and then runs `then(module)` right after the
    module has run, before anyone can use it. It is used once and removes itself."""

    def __init__(self, name, then):
        self._name = name
        self._then = then

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self._name:
            return None
        sys.meta_path.remove(self)
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        exec_module = getattr(loader, "exec_module", None)
        if exec_module is None:
            return spec
        then = self._then

        def exec_then(module):
            exec_module(module)
            then(module)

        # The loader was made for this module alone (a file finder makes one per module it finds).
        loader.exec_module = exec_then
        return spec


def _patch_subprocess(subprocess):
    import codecs

    popen_init = subprocess.Popen.__init__
    popen_wait = subprocess.Popen.wait

    def pump(fd, stream):
        decode = codecs.getincrementaldecoder("utf-8")("replace").decode
        with open(fd, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                if text := decode(chunk):
                    stream.write(text)
        if text := decode(b"", True):
            stream.write(text)

    def __init__(self, args, *rest, **kwargs):
        tls = _tls
        slot = getattr(tls, "slot", None)
        ours = getattr(tls, "owner", None) is not None or (slot is not None and slot[0] is not None)
        pipes = []
        # stdout and stderr are Popen's 5th and 6th parameters: given positionally, they are chosen.
        for position, name, stream in ((4, "stdout", _STDOUT), (5, "stderr", _STDERR)):
            if ours and len(rest) < position and kwargs.get(name) is None:
                read, write = os.pipe()
                kwargs[name] = write
                pipes.append((read, write, stream))
        try:
            popen_init(self, args, *rest, **kwargs)
        except BaseException:
            for read, _, _ in pipes:
                os.close(read)
            raise
        finally:
            # The child has its own copies; the pipe ends when it (and whatever it started) is done.
            for _, write, _ in pipes:
                os.close(write)
        self._braid_pumps = []
        for read, _, stream in pipes:
            pump_thread = threading.Thread(target=pump, args=(read, stream), name="braid-subprocess-output", daemon=True)
            pump_thread.start()
            self._braid_pumps.append(pump_thread)

    def wait(self, timeout=None):
        code = popen_wait(self, timeout)
        # Its output is in before the block goes on; a process it left running may hold the pipe open,
        # so not for long.
        for pump_thread in getattr(self, "_braid_pumps", ()):
            pump_thread.join(0.5)
        return code

    subprocess.Popen.__init__ = __init__
    subprocess.Popen.wait = wait


class _BlockEnviron(collections.abc.MutableMapping):
    """os.environ as each block sees it: the process environment with the values of the variables the
    running block declares laid over it. Invocations of different blocks share this process (and run on
    threads at once), so the overlay is per thread; os.environ itself is never rewritten. Child
    processes started by user code inherit the process environment only."""

    def __init__(self, real):
        self._real = real

    def _overlay(self):
        return getattr(_tls, "env", None)

    def __getitem__(self, key):
        overlay = self._overlay()
        if overlay is not None and key in overlay:
            return overlay[key]
        return self._real[key]

    def __setitem__(self, key, value):
        overlay = self._overlay()
        if overlay is not None and key in overlay:
            overlay[key] = value
        else:
            self._real[key] = value

    def __delitem__(self, key):
        overlay = self._overlay()
        if overlay is not None and key in overlay:
            del overlay[key]
        else:
            del self._real[key]

    def __iter__(self):
        overlay = self._overlay() or {}
        yield from overlay
        for key in self._real:
            if key not in overlay:
                yield key

    def __len__(self):
        return sum(1 for _ in self)

    def copy(self):
        return dict(self)

    def __repr__(self):
        return f"environ({dict(self)!r})"


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
        message = f"ran past its timeout of {block.timeout_s:g} s"
        # The traceback shows where the code was when it was stopped; its last line names Braid's
        # internal exception, so say what happened instead.
        trace = _format_tb().rstrip("\n").rsplit("\n", 1)[0]
        return TIMED_OUT, ["Timeout", message, f"{trace}\nTimeout: {message}\n", _user_line(block)]
    if isinstance(exc, BraidCancelled):
        return CANCELLED, ["Cancelled", "the run was stopped", "", None]
    if isinstance(exc, SystemExit):
        return RAISED, ["SystemExit", f"the code called sys.exit({exc.code!r})", _format_tb(), _user_line(block)]
    message = str(exc)
    # A missing package (not a missing submodule of one that is there): blocks don't see what is
    # installed beside the interpreter (the worker starts without `site`), so the likely fix is the one
    # Refinery asked for too.
    if isinstance(exc, ModuleNotFoundError) and exc.name and exc.name.partition(".")[0] not in sys.modules:
        message += (
            " (a block imports the standard library and its project's libraries only: add the package"
            " that provides it to the block's Libraries)"
        )
    return RAISED, [type(exc).__name__, message, _format_tb(), _user_line(block)]


def _json_default(value):
    """What JSON can't hold as it is: numpy arrays and scalars (anything with a `tolist`, which gives
    the lists and plain numbers they stand for; `numpy.int64` is no int to json) become those. Anything
    else is not JSON, as json itself says. Called only for such values, so plain ones cost nothing more."""
    tolist = getattr(type(value), "tolist", None)
    if callable(tolist):
        return tolist(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_FAST_ENCODE = json.JSONEncoder(separators=(",", ":"), allow_nan=False, check_circular=False, ensure_ascii=False, default=_json_default).encode
_CHECKED_ENCODE = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False, default=_json_default).encode


def _fast_json(value):
    """`value` as JSON in UTF-8. Text that is not Unicode (a lone surrogate: bytes that were not UTF-8,
    kept by os.fsdecode or errors="surrogateescape") raises UnicodeEncodeError, a ValueError, like any
    other value JSON can't hold. No circular check (it costs a third of the encoding): a cyclic value
    recurses until RecursionError and is then found by a checked pass. Values of the plain built-in
    types are encoded in Rust (native.rs), about six times as fast; the rest as before."""
    encoded = _native_json(value)
    if encoded is not None:
        return encoded
    return _FAST_ENCODE(value).encode()


def _json(value):
    """`_fast_json` with the circular check, for finding the value that failed."""
    return _CHECKED_ENCODE(value).encode()


def _clean_text(text):
    """Text with each lone surrogate (or the byte it stands for) replaced by U+FFFD, for display."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _clean_texts(row):
    """A full row with its printed output and error text made displayable (see _clean_text)."""
    row = list(row)
    row[7] = _clean_text(row[7])
    row[8] = _clean_text(row[8])
    if row[9] is not None:
        row[9] = [_clean_text(part) if isinstance(part, str) else part for part in row[9]]
    return row


class Batch:
    """A decoded run frame: its block and an iterator over its (key, input, backpack), shared by the exec
    threads."""

    __slots__ = ("block", "size", "it", "done", "fresh")

    def __init__(self, block, size, it, fresh=False):
        self.block = block
        self.size = size
        self.it = it
        # Every task starts with a fresh empty backpack (the frame said so).
        self.fresh = fresh
        # Set by the first thread to find the iterator exhausted; the batch then leaves the queue.
        self.done = False


def _captured(buf):
    """An invocation's printed text from its capture buffer (see _Capture.write), with a note when
    some of it was dropped."""
    if buf is None:
        return ""
    text = "".join(buf[1:])
    dropped = buf[0] - CAPTURE_LIMIT
    if dropped > 0:
        text += f"\n[Braid kept the first {CAPTURE_LIMIT:,} characters of this output; {dropped:,} more were dropped]\n"
    return text


def _unencodable(row, exc):
    """The row of an invocation whose return value (or backpack) is not JSON: it fails, naming the type."""
    key, t0, duration, ret, backpack = row[:5]
    out, err = (_clean_text(row[7]), _clean_text(row[8])) if len(row) > 5 else ("", "")
    what, value = "return value", ret
    try:
        _json(ret)
        what, value = "backpack", backpack
    except (TypeError, ValueError, RecursionError):
        pass
    if isinstance(exc, UnicodeEncodeError):
        bad = exc.object[exc.start:exc.end]
        error = ["ValueError", f"the {what} holds text that is not Unicode: {bad!r} (bytes that were not UTF-8, kept by os.fsdecode or errors='surrogateescape'); decode such bytes with errors='replace', or pass them as base64", "", None]
    else:
        error = ["TypeError", f"the {what} is not JSON-serialisable: {type(value).__name__} ({exc})", "", None]
    safe_backpack = None
    if what == "return value":
        try:
            _json(backpack)
            safe_backpack = backpack
        except (TypeError, ValueError, RecursionError):
            pass
    return [key, t0, duration, None, safe_backpack, RAISED, [], out, err, error]


def _async_raise(ident, exc_type):
    import ctypes  # Here rather than as the worker starts: only timeouts and cancels need it.

    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exc_type))


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
        te.stack = traceback.StackSummary.from_list([f for f in te.stack if f.filename != _WORKER_FILE])
        todo.extend(t for t in (te.__cause__, te.__context__) if t is not None)
        todo.extend(getattr(te, "exceptions", None) or ())
    return "".join(top.format())


_WORKER_FILE = _format_tb.__code__.co_filename


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
    sys.stdin = open(os.devnull)
    global _streams
    _streams = (_STDOUT, _STDERR)
    sys.stdout, sys.stderr = _streams
    os.environ = _BlockEnviron(os.environ)
    _inherit_invocations()
    _capture_subprocesses()
    _track_chdir()
    _start_modules_dir()
    worker = Worker(fd_in, fd_out)
    real_exit = os._exit

    def _exit(code):
        if _forked:
            # A child the block forked: nothing of the worker's is its to send.
            real_exit(code)
        # The invocation running on this thread, if the call came from one.
        slot = worker.running.get(threading.get_ident())
        key = slot[0] if slot is not None else None
        try:
            # Results that finished here and wait for their batch go out first: the parent would
            # otherwise run them again on a fresh worker, repeating what they did.
            worker.flush()
            if key is not None:
                worker.send({"op": "exiting", "key": key, "code": code})
        except BaseException:
            pass
        real_exit(code)

    os._exit = _exit
    os.register_at_fork(after_in_child=_after_fork_in_child)
    worker.serve()
    if _modules_dir[0] is not None:
        _remove_modules_dir(_modules_dir[0])
    # Braid is done with this worker, or gone (killed: it had no chance to end the worker itself).
    # Whatever the blocks started and left running ends with the worker: it leads its own group.
    if os.getpgrp() == os.getpid():
        import signal

        os.killpg(0, signal.SIGKILL)
    real_exit(0)
