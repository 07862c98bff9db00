"""Each invocation to itself in a process many share: threads and subprocesses an invocation starts
belong to it (its variables, its printed output), and what a block changes for the whole process
(sys.stdout, the working folder, a forked child going on as the worker) is put right when its invocation
ends. The hooks mark the invocation as if it printed, so that the native loop hands it back to loop.py
without checks of its own (see docs/runtime.md)."""

import collections.abc
import os
import sys
import threading

from .capture import STDERR, STDOUT, tls

# The streams invocations print to: Braid's once the worker has started (loop.main), those of the process
# that imported this package until then (the tests that drive the worker's loop).
streams = [sys.stdout, sys.stderr]

# The folder blocks run in (the project's), and whether a block has moved the worker out of it.
home = [None, False]
real_chdir = os.chdir

# [True] in a child process a block forked (os.fork without exec, a multiprocessing "fork" child).
forked = [False]
real_os_exit = os._exit


def _as_if_printed():
    """Marks the running invocation as if it printed: its end then goes through loop.py's Python."""
    capture = getattr(tls, "capture", None)
    if capture is not None and capture[0] is None:
        capture[0] = [0]


def track_chdir():
    """os.chdir and os.fchdir as blocks see them: a block that moves the worker's working folder (to run
    a tool somewhere, say) takes the rest of the worker's invocations along; noted here, it is moved
    back when that invocation ends (see restore_home)."""
    for name in ("chdir", "fchdir"):
        real = getattr(os, name)

        def moved(path, _real=real):
            _real(path)
            home[1] = True
            _as_if_printed()

        setattr(os, name, moved)


def _others_running(running, slot):
    return any(other is not slot and other[0] is not None for other in list(running.values()))


def restore_home(running, slot):
    """Back to the project's folder once the invocation that moved away has ended, unless another one is
    running (it may rely on being where it moved)."""
    if home[0] is None or _others_running(running, slot):
        return
    home[1] = False
    try:
        real_chdir(home[0])
    except OSError:
        pass


def restore_streams(running, slot):
    """A block that reassigned sys.stdout or sys.stderr and did not put it back would take the printed
    output of every later invocation on this worker with it: Braid's go back once its invocation has
    ended, unless another one is running (it may be inside a `redirect_stdout` of its own)."""
    out, err = streams
    if (sys.stdout is not out or sys.stderr is not err) and not _others_running(running, slot):
        sys.stdout = out
        sys.stderr = err


def after_fork_in_child():
    """A child a block forked must not go on as the worker (running the rest of the batch again, sending
    results): when the block returns or raises in it, the child ends there, as if by os._exit(0)."""
    forked[0] = True
    _as_if_printed()


# ----- block modules for child processes -----
# Where each loaded block's code is also a module file (see publish_module), once the worker has started.
modules_dir = [None]


def start_modules_dir():
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
                pid = name[len(prefix) :].split("-", 1)[0]
                if pid.isdigit() and not _alive(int(pid)):
                    remove_modules_dir(os.path.join(base, name))
        path = os.path.join(base, f"{prefix}{os.getpid()}-{os.urandom(4).hex()}")
        os.mkdir(path, 0o700)
        modules_dir[0] = path
        # Last: a block module must never shadow a library (multiprocessing hands sys.path to children).
        sys.path.append(path)
    except OSError:
        pass


def remove_modules_dir(path):
    """Removes a modules folder and what is in it: the module files, and the __pycache__ that a child
    Python importing them may have written."""
    try:
        for entry in os.scandir(path):
            if entry.is_dir(follow_symlinks=False):
                remove_modules_dir(entry.path)
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


def publish_module(block, code):
    """Writes `block`'s code as its module's file in the worker's folder (see start_modules_dir)."""
    if modules_dir[0] is None:
        return
    try:
        with open(os.path.join(modules_dir[0], f"{block.module_name}.py"), "w", encoding="utf-8") as f:
            f.write(code)
    except (OSError, ValueError):
        pass


def unpublish_module(block):
    if modules_dir[0] is None:
        return
    try:
        os.unlink(os.path.join(modules_dir[0], f"{block.module_name}.py"))
    except OSError:
        pass


# ----- threads, subprocesses and variables of an invocation -----
def inherit_invocations():
    """Threads that an invocation starts (a ThreadPoolExecutor calling an API, say) belong to it: they see
    its block's variables in os.environ, and what they print is the invocation's printed output (until
    it ends; after that it goes to the worker's stderr, see docs/runtime.md)."""
    thread_init = threading.Thread.__init__
    bootstrap_inner = threading.Thread._bootstrap_inner

    def __init__(self, *args, **kwargs):
        thread_init(self, *args, **kwargs)
        owner = getattr(tls, "owner", None)
        if owner is None:
            slot = getattr(tls, "slot", None)
            if slot is not None and slot[0] is not None:
                owner = (tls.capture, getattr(tls, "env", None), slot, slot[0])
        self._braid_owner = owner

    def _bootstrap_inner(self):
        owner = getattr(self, "_braid_owner", None)
        if owner is not None:
            tls.capture, tls.env, tls.owner = owner[0], owner[1], owner
        bootstrap_inner(self)

    threading.Thread.__init__ = __init__
    threading.Thread._bootstrap_inner = _bootstrap_inner


def capture_subprocesses():
    """What a subprocess an invocation starts writes to the stdout and stderr it inherits is that
    invocation's printed output, in order with its own prints (a tool's error message is often the
    "why"): each such stream gets a pipe of its own, read by a thread that belongs to the invocation
    (see inherit_invocations), and waiting for the process waits for its output too. Streams the
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
        sys.meta_path.insert(0, WhenImported("subprocess", _patch_subprocess))


class WhenImported:
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
        slot = getattr(tls, "slot", None)
        ours = getattr(tls, "owner", None) is not None or (slot is not None and slot[0] is not None)
        pipes = []
        # stdout and stderr are Popen's 5th and 6th parameters: given positionally, they are chosen.
        for position, name, stream in ((4, "stdout", STDOUT), (5, "stderr", STDERR)):
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


class BlockEnviron(collections.abc.MutableMapping):
    """os.environ as each block sees it: the process environment with the values of the variables the
    running block declares laid over it. Invocations of different blocks share this process (and run on
    threads at once), so the overlay is per thread; os.environ itself is never rewritten. Child
    processes started by user code inherit the process environment only."""

    def __init__(self, real):
        self._real = real

    def _overlay(self):
        return getattr(tls, "env", None)

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
