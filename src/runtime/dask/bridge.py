"""Braid's bridge to a Dask cluster: the one process that holds the `distributed.Client` of a Braid runtime's
runs on that cluster (src/runtime/dask/mod.rs starts it and speaks to it over stdin/stdout, framed as the
worker protocol is: a little-endian u32 length, then the body).

Braid's own scheduler decides what runs and when; this process only carries batches (many invocations of one
block, as the worker protocol's run frame) to the cluster and their results frames back. On each Dask worker a
plugin (BraidPlugin, sent through Dask itself, so a stock `dask worker` serves a Braid run and one its nanny
restarts gets it too) keeps `braid_worker` child processes: the same worker package Braid runs locally,
in a plain Python started without `site`. A timeout that Python can't stop, `os._exit` or a segfault
costs that child, not the Dask worker; the task reports the culprit and the invocations it did not answer,
and Braid runs those again.

Requests (Braid -> bridge): JSON `{"op": ...}` objects (`load`, `unload`, `cancel`), or a batch: the byte
`B`, then u64 batch id, u64 program id, u32 key count, the keys (u64 each), then the run frame.
Replies (bridge -> Braid): JSON (`ready`, `broken`, `loaded`, `refused`, `threads`), or a batch's end: the
byte `D`, a u32 length and a JSON header, then its results frames (each a u32 length and the frame)."""

import json
import os
import struct
import sys
import threading
import time

# Set by main() from Braid's start request; the functions the workers run get them as arguments.
PLUGIN_NAME = None

# How long a lost scheduler may take to come back before the runs on it fail.
RECONNECT_S = float(os.environ.get("BRAID_DASK_RECONNECT_S", "5"))
# A child past its invocations' timeouts and silent this long is killed (as the local pool's SILENCE_LIMIT).
SILENCE_S = 5.0
# Lines of a child's stderr kept to explain its crash.
STDERR_LINES = 40
# Programs a child keeps loaded (older ones are unloaded as new ones come).
KEEP_PROGRAMS = 4


# ----- framing -----
def read_exact(fd, n):
    chunks = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(fd):
    header = read_exact(fd, 4)
    if header is None:
        return None
    return read_exact(fd, int.from_bytes(header, "little"))


def write_frame(fd, body):
    view = memoryview(len(body).to_bytes(4, "little") + body)
    while view:
        view = view[os.write(fd, view) :]


def result_keys(frame):
    """The keys a results frame (docs/worker-protocol.md) answers: its short rows' column, then its full
    rows' first fields."""
    (n,) = struct.unpack_from("<I", frame, 9)
    keys = list(struct.unpack_from(f"<{n}q", frame, 13))
    at = 13 + 24 * n
    for _ in range(2):
        (length,) = struct.unpack_from("<I", frame, at)
        at += 4 + length
    (length,) = struct.unpack_from("<I", frame, at)
    keys.extend(row[0] for row in json.loads(frame[at + 4 : at + 4 + length]))
    return keys


# ----- on the Dask workers -----
try:
    from distributed import WorkerPlugin
except ImportError:
    # main() says what to install.
    WorkerPlugin = object


class Child:
    """One `braid_worker` process on a Dask worker: Braid's worker package in a plain Python started without
    `site` (blocks see the standard library and the project's libraries only, as they do locally), leading a
    process group of its own so that what its blocks start ends with it."""

    def __init__(self, package_dir):
        import collections
        import subprocess

        code = (
            "import sys\n"
            f"sys.path[:] = [{package_dir!r}] + [p for p in sys.path if p]\n"
            "import braid_worker.loop\n"
            f"sys.path.remove({package_dir!r})\n"
            "braid_worker.loop.main(sys.executable)\n"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-S", "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.fd_in = self.proc.stdin.fileno()
        self.fd_out = self.proc.stdout.fileno()
        self.write_lock = threading.Lock()
        self.loaded = collections.OrderedDict()
        self.tail = collections.deque(maxlen=STDERR_LINES)
        self.output = []
        self.output_lock = threading.Lock()
        # The batch it runs: its program and keys (for cancels).
        self.program = None
        self.keys = set()
        threading.Thread(target=self._read_stderr, name="braid-child-stderr", daemon=True).start()

    def _read_stderr(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.tail.append(line)
            with self.output_lock:
                self.output.append(line)

    def take_output(self):
        with self.output_lock:
            lines, self.output = self.output, []
        return lines

    def send(self, body):
        with self.write_lock:
            write_frame(self.fd_in, body)

    def alive(self):
        return self.proc.poll() is None

    def kill(self):
        import signal

        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            self.proc.kill()
        except OSError:
            pass

    def exit_text(self, grace_s=0.5):
        """How the child ended (waiting a moment for it to finish dying), as the local pool says it."""
        try:
            code = self.proc.wait(grace_s)
        except Exception:
            self.kill()
            code = self.proc.wait()
        if code is None:
            return "stopped answering"
        if code >= 0:
            return f"exited with code {code}"
        names = {
            4: "SIGILL, an illegal instruction",
            6: "SIGABRT, aborted",
            7: "SIGBUS, a bus error",
            8: "SIGFPE",
            9: "SIGKILL, perhaps out of memory",
            11: "SIGSEGV, a segmentation fault",
            15: "SIGTERM",
        }
        return f"killed by signal {-code} ({names.get(-code, 'a signal')})"


class BraidPlugin(WorkerPlugin):
    """Set up on every Dask worker (and on each one a nanny restarts): writes Braid's worker package to a
    folder of its own and keeps idle children to run batches in, one batch per child at a time (so a
    Dask worker runs as many batches at once as it has threads)."""

    # Every run's bridge registers it; its name holds the package's hash, so one already there is the
    # same: registering it again must not tear it down under the runs using it.
    idempotent = True

    def __init__(self, sources):
        self.sources = sources

    def setup(self, worker):
        import tempfile

        self.address = worker.address
        self.dir = tempfile.mkdtemp(prefix="braid-dask-")
        package = os.path.join(self.dir, "braid_worker")
        os.mkdir(package)
        for name, source in self.sources.items():
            with open(os.path.join(package, f"{name}.py"), "w", encoding="utf-8") as f:
                f.write(source)
        self.lock = threading.Lock()
        self.idle = []
        self.busy = set()
        self.cancelled = set()

    def teardown(self, worker):
        import shutil

        with self.lock:
            children = self.idle + list(self.busy)
            self.idle = []
        for child in children:
            child.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    # Runs on the worker's event loop (Client.run): tells the children to stop these invocations now, and
    # any batch that starts later here to stop them as it starts.
    def cancel(self, program, keys):
        keys = set(keys)
        with self.lock:
            self.cancelled |= {(program, key) for key in keys}
            busy = [(child, child.keys & keys) for child in self.busy if child.program == program and child.keys & keys]
        for child, theirs in busy:
            # Only the child's own keys: a child keeps the keys it was told to cancel until they run,
            # and later batches (of other runs, whose keys may be the same numbers) run in it too.
            try:
                child.send(json.dumps({"op": "cancel", "keys": sorted(theirs)}).encode())
            except OSError:
                pass

    def _checkout(self):
        with self.lock:
            while self.idle:
                child = self.idle.pop()
                if child.alive():
                    self.busy.add(child)
                    return child
        child = Child(self.dir)
        with self.lock:
            self.busy.add(child)
        return child

    def _checkin(self, child, keep):
        with self.lock:
            self.busy.discard(child)
            if keep:
                child.program, child.keys = None, set()
                self.idle.append(child)
        if not keep:
            child.kill()

    def _load(self, child, program_id, program, site_packages):
        """Loads the program into the child unless it has it; the compile errors (none once the run has
        started: its compile task checked them)."""
        if program_id in child.loaded:
            child.loaded.move_to_end(program_id)
            return []
        if site_packages is not None:
            request = json.loads(program)
            request["site_packages"] = site_packages
            program = json.dumps(request).encode()
        child.send(program)
        while True:
            body = read_frame(child.fd_out)
            if body is None:
                tail = "\n".join(child.tail)
                raise ChildDied(f"its Python process {child.exit_text()} while it loaded the code" + (f":\n{tail}" if tail else ""))
            reply = json.loads(body)
            if reply.get("op") == "loaded" and reply.get("program") == program_id:
                break
        child.loaded[program_id] = True
        while len(child.loaded) > KEEP_PROGRAMS:
            old, _ = child.loaded.popitem(last=False)
            child.send(json.dumps({"op": "unload", "program": old}).encode())
        return reply["errors"]

    def compile(self, program_id, program, requirements):
        """Compiles a program in a child here: (this worker, its compile errors, or None and what is missing
        when the project's libraries are not installed here)."""
        site_packages, missing = libraries(requirements)
        if missing:
            return self.address, None, missing
        child = self._checkout()
        keep = False
        try:
            errors = self._load(child, program_id, program, site_packages)
            keep = True
            return self.address, errors, None
        finally:
            self._checkin(child, keep)

    def run(self, program_id, program, requirements, keys, frame, timeout_s):
        """Runs one batch in a child: (this worker, the results frames, what went wrong). A child that dies
        is reported with the invocation that killed it, when known, and the keys it never answered."""
        site_packages, _ = libraries(requirements)
        pending = set(keys)
        frames = []
        report = {"worker": self.address}
        child = self._checkout()
        with self.lock:
            child.program, child.keys = program_id, set(keys)
        keep = False
        culprit = None
        try:
            try:
                self._load(child, program_id, program, site_packages)
                child.send(frame)
                with self.lock:
                    stop = sorted(key for key in pending if (program_id, key) in self.cancelled)
                if stop:
                    child.send(json.dumps({"op": "cancel", "keys": stop}).encode())
                culprit = self._collect(child, pending, frames, timeout_s)
            except (ChildDied, OSError):
                pass
            if not pending:
                keep = child.alive()
                return self.address, frames, report
            # The child is gone or must go: say how, and which keys it left unanswered.
            if culprit is not None and culprit[0] == "stuck":
                child.kill()
            how = child.exit_text()
            report["died"] = {
                "how": how,
                "culprit": None if culprit is None else culprit[1],
                "kind": None if culprit is None else culprit[0],
                "code": None if culprit is None else culprit[2],
                "stderr": "\n".join(child.tail),
            }
            report["unrun"] = sorted(pending - {report["died"]["culprit"]})
            return self.address, frames, report
        finally:
            report["output"] = child.take_output()
            with self.lock:
                self.cancelled -= {(program_id, key) for key in keys}
            self._checkin(child, keep)

    def _collect(self, child, pending, frames, timeout_s):
        """Reads the child's replies until every key is answered; the culprit when it dies first."""
        import select

        started = last_heard = time.monotonic()
        culprit = None
        while pending:
            readable, _, _ = select.select([child.fd_out], [], [], 0.5)
            now = time.monotonic()
            if not readable:
                if now - last_heard > SILENCE_S and now - started > timeout_s + SILENCE_S:
                    # Silent and past its timeouts: Python could not even run the child's monitor.
                    child.kill()
                    return ("stuck", None, None)
                continue
            body = read_frame(child.fd_out)
            if body is None:
                return culprit
            last_heard = now
            if body[:1] == b"R":
                pending.difference_update(result_keys(body))
                frames.append(body)
                continue
            reply = json.loads(body)
            op = reply.get("op")
            if op == "exiting":
                culprit = ("exit", reply["key"], reply["code"])
            elif op == "stuck":
                return ("stuck", reply["key"], None)
        return culprit


class ChildDied(Exception):
    pass


def libraries(requirements):
    """(the site-packages folders blocks get, the requirements not installed in this Python): the project's
    libraries come from the Dask worker's own environment, wherever `site` finds them there (a user's
    `pip install --user` puts them in the user site, which the children, started without `site`, would
    not otherwise see)."""
    if not requirements:
        return None, []
    import site
    import sysconfig
    from importlib import metadata

    from packaging.requirements import InvalidRequirement, Requirement

    missing = []
    for text in requirements:
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            missing.append(text)
            continue
        try:
            version = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            missing.append(text)
            continue
        if requirement.specifier and not requirement.specifier.contains(version, prereleases=True):
            missing.append(text)
    paths = sysconfig.get_paths()
    folders = [site.getusersitepackages()] if site.ENABLE_USER_SITE else []
    folders += [paths["purelib"], paths["platlib"]]
    return [f for i, f in enumerate(folders) if f not in folders[:i] and os.path.isdir(f)], missing


# The functions Dask runs: module-level here (sent by value: this file is the bridge's __main__), each
# finding the plugin on the worker that runs it.
def braid_compile(name, program_id, program, requirements):
    from distributed import get_worker

    return get_worker().plugins[name].compile(program_id, program, requirements)


def braid_batch(name, program_id, program, requirements, keys, frame, timeout_s):
    from distributed import get_worker

    return get_worker().plugins[name].run(program_id, program, requirements, keys, frame, timeout_s)


def braid_cancel(name, program, keys, dask_worker=None):
    plugin = dask_worker.plugins.get(name)
    if plugin is not None:
        plugin.cancel(program, keys)


def braid_python(dask_worker=None):
    return list(sys.version_info[:3]), sys.executable


# ----- the bridge -----
class Bridge:
    def __init__(self, scheduler, sources, plugin):
        self.scheduler = scheduler
        self.sources = sources
        self.plugin = plugin
        self.out_lock = threading.Lock()
        self.client = None
        # program id -> (its future on the cluster, its requirements)
        self.programs = {}
        # batch id -> (future, keys, program id)
        self.batches = {}
        self.by_key = {}
        # Batches Braid cancelled whole.
        self.stopped = set()
        self.lock = threading.Lock()
        self.threads = 0
        self.closing = False
        # Interrupts on their way to the workers: the bridge ends only once they are delivered.
        self.interrupts = []

    def send(self, body):
        with self.out_lock:
            write_frame(OUT, body)

    def reply(self, message):
        self.send(json.dumps(message, separators=(",", ":")).encode())

    def broken(self, message):
        self.reply({"op": "broken", "message": message})

    def connect(self):
        global PLUGIN_NAME
        from distributed import Client

        try:
            self.client = Client(self.scheduler, timeout=float(os.environ.get("BRAID_DASK_CONNECT_S", "10")), set_as_default=False)
        except Exception as e:
            self.broken(f"can't reach the Dask scheduler at {self.scheduler}: {_text(e)}")
            return False
        try:
            self.client.wait_for_workers(1, timeout=float(os.environ.get("BRAID_DASK_WORKERS_S", "10")))
        except Exception:
            self.broken(f"the Dask scheduler at {self.scheduler} has no workers: start some with `dask worker {self.scheduler}`")
            return False
        ours = list(sys.version_info[:2])
        others = {}
        for address, (version, executable) in self.client.run(braid_python).items():
            if version[:2] != ours:
                others[address] = (version, executable)
        if others:
            address, (version, executable) = sorted(others.items())[0]
            self.broken(
                f"the Dask worker at {address} runs Python {'.'.join(map(str, version))} ({executable}); "
                f"Braid runs blocks on Python {ours[0]}.{ours[1]}: start the workers with a Python "
                f"{ours[0]}.{ours[1]} that has dask[distributed] installed"
            )
            return False
        PLUGIN_NAME = self.plugin
        self.client.register_plugin(BraidPlugin(self.sources), name=PLUGIN_NAME)
        threading.Thread(target=self.watch, name="braid-watch", daemon=True).start()
        threading.Thread(target=self.count_threads, name="braid-threads", daemon=True).start()
        self.threads = self.total_threads()
        self.reply({"op": "ready", "threads": self.threads, "python": sys.version.split()[0]})
        return True

    def total_threads(self):
        try:
            workers = self.client.scheduler_info(n_workers=-1)["workers"]
        except TypeError:
            workers = self.client.scheduler_info()["workers"]
        except Exception:
            return self.threads
        return sum(w.get("nthreads", 1) for w in workers.values())

    def count_threads(self):
        """Tells Braid how many threads the cluster has as workers come and go (its batches are cut to
        fit). A thread of its own: asking the scheduler may wait while it is unreachable."""
        while not self.closing:
            time.sleep(2)
            if getattr(self.client, "status", "running") != "running":
                continue
            threads = self.total_threads()
            if threads != self.threads and threads:
                self.threads = threads
                self.reply({"op": "threads", "threads": threads})

    def watch(self):
        """Fails the runs when the scheduler is lost for longer than it takes to come back. Reads the
        client's status only: nothing here may wait on the scheduler."""
        lost_since = None
        while not self.closing:
            time.sleep(0.25)
            if getattr(self.client, "status", "running") == "running":
                lost_since = None
                continue
            if lost_since is None:
                lost_since = time.monotonic()
            elif time.monotonic() - lost_since > RECONNECT_S:
                self.broken(f"lost the connection to the Dask scheduler at {self.scheduler} (it stopped or can't be reached)")
                os._exit(0)

    def finished(self, batch_id, future):
        """Sends a batch's end to Braid (a future's callback, on a thread of the client's)."""
        with self.lock:
            entry = self.batches.pop(batch_id, None)
            if entry is None:
                return
            for key in entry[1]:
                self.by_key.pop(key, None)
            stopped = batch_id in self.stopped
            self.stopped.discard(batch_id)
        header = {"batch": batch_id}
        frames = []
        if future.status == "finished":
            try:
                _, frames, report = future.result()
                header.update(report)
            except Exception as e:
                header["error"] = _text(e)
        elif future.status == "cancelled":
            if stopped:
                header["cancelled"] = True
            else:
                # Not by Braid: the client lost the scheduler (the watch thread says so in a moment).
                header["error"] = f"the Dask scheduler at {self.scheduler} lost it"
        else:
            try:
                error = future.exception()
            except Exception as e:
                error = e
            header["error"] = _text(error)
        head = json.dumps(header, separators=(",", ":")).encode()
        parts = [b"D", len(head).to_bytes(4, "little"), head]
        for frame in frames:
            parts.append(len(frame).to_bytes(4, "little"))
            parts.append(frame)
        self.send(b"".join(parts))

    def load(self, request):
        """Checks the workers have the project's libraries and compiles the program on one; answered by
        `loaded` or `refused`."""
        program_id = request["program"]
        requirements = request.get("requirements") or []
        body = json.dumps(request["load"], separators=(",", ":")).encode()
        try:
            if requirements:
                missing = {}
                for address, (_, lacking) in self.client.run(libraries, requirements).items():
                    if lacking:
                        missing[address] = lacking
                if missing:
                    address, lacking = sorted(missing.items())[0]
                    (_, executable), *_ = self.client.run(braid_python, workers=[address]).values()
                    quoted = " ".join(f"'{r}'" for r in lacking)
                    self.reply(
                        {
                            "op": "refused",
                            "program": program_id,
                            "message": f"the Dask worker at {address} does not have the project's libraries {', '.join(lacking)}: "
                            f"install them in the Python the workers run ({executable} -m pip install {quoted}) and start them again",
                        }
                    )
                    return
            # The program goes with each batch, not scattered once: scattered data dies with the workers
            # that hold it (a worker killed mid-run took it, failing every batch after), while a
            # program is a few kilobytes of code. Each child compiles it once.
            self.programs[program_id] = (body, requirements)
            _, errors, _ = self.client.submit(braid_compile, PLUGIN_NAME, program_id, body, requirements, pure=False).result()
            self.reply({"op": "loaded", "program": program_id, "errors": errors})
        except Exception as e:
            self.reply({"op": "refused", "program": program_id, "message": f"the Dask cluster at {self.scheduler} could not compile the code: {_text(e)}"})

    def submit(self, body):
        batch_id, program_id, count = struct.unpack_from("<QQI", body, 1)
        keys = list(struct.unpack_from(f"<{count}Q", body, 21))
        at = 21 + 8 * count
        (timeout_s,) = struct.unpack_from("<d", body, at)
        frame = body[at + 8 :]
        program, requirements = self.programs[program_id]
        future = self.client.submit(
            braid_batch, PLUGIN_NAME, program_id, program, requirements, keys, frame, timeout_s, pure=False, key=f"braid-batch-{batch_id}-{os.getpid()}"
        )
        with self.lock:
            self.batches[batch_id] = (future, keys, program_id)
            for key in keys:
                self.by_key[key] = batch_id
        future.add_done_callback(lambda done: self.finished(batch_id, done))

    def cancel(self, keys):
        keys = set(keys)
        with self.lock:
            batches = {self.by_key[key] for key in keys if key in self.by_key}
            whole = [b for b in batches if b in self.batches and set(self.batches[b][1]) <= keys]
            self.stopped.update(whole)
            whole = [self.batches[b][0] for b in whole]
            by_program = {}
            for b in batches:
                if b in self.batches:
                    _, batch_keys, program_id = self.batches[b]
                    by_program.setdefault(program_id, set()).update(keys & set(batch_keys))
        if whole:
            # Those not started yet never will; one running on a worker ends through its child.
            self.client.cancel(whole, reason="the run was stopped")
        for program_id, program_keys in by_program.items():
            interrupt = threading.Thread(target=self.interrupt, args=(program_id, sorted(program_keys)), daemon=True)
            interrupt.start()
            self.interrupts = [t for t in self.interrupts if t.is_alive()] + [interrupt]

    def interrupt(self, program_id, keys):
        """Stops the invocations running on the workers (off the main thread: it takes a round trip)."""
        try:
            self.client.run(braid_cancel, PLUGIN_NAME, program_id, keys, on_error="ignore")
        except Exception:
            # The client is closing or lost: its batches end with it.
            pass

    def unload(self, program_id):
        self.programs.pop(program_id, None)

    def serve(self):
        while True:
            body = read_frame(0)
            if body is None:
                break
            if body[:1] == b"B":
                self.submit(body)
                continue
            request = json.loads(body)
            op = request["op"]
            if op == "load":
                threading.Thread(target=self.load, args=(request,), daemon=True).start()
            elif op == "cancel":
                self.cancel(request["keys"])
            elif op == "unload":
                self.unload(request["program"])
            else:
                raise ValueError(f"the bridge does not know the request {op!r}")
        # A headless run that was stopped ends right after its cancel: the interrupts it sent still go
        # out (briefly: Braid kills a bridge that takes longer than a few seconds to end), or the
        # invocations running on the cluster would hold its workers' threads until they returned.
        deadline = time.monotonic() + 2
        for interrupt in self.interrupts:
            interrupt.join(max(0.0, deadline - time.monotonic()))
        self.closing = True
        try:
            self.client.close(timeout=2)
        except Exception:
            pass


def _text(error):
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


# Frames to Braid go here: fd 1 itself is stderr's copy (a print anywhere must not break a frame).
OUT = 1


def main():
    global OUT
    OUT = os.dup(1)
    os.dup2(2, 1)
    start = read_frame(0)
    if start is None:
        return
    request = json.loads(start)
    try:
        import distributed  # noqa: F401
    except ImportError:
        python = sys.executable
        write_frame(
            OUT,
            json.dumps(
                {"op": "broken", "message": f"the Python Braid runs with ({python}) has no Dask: install it with {python} -m pip install 'dask[distributed]'"}
            ).encode(),
        )
        return
    # Dask's own logging goes to stderr, which Braid logs (RUST_LOG=braid::dask=debug).
    bridge = Bridge(request["scheduler"], request["package"], request["plugin"])
    if bridge.connect():
        bridge.serve()


if __name__ == "__main__":
    main()
