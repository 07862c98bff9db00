"""The worker's side of Braid's worker protocol (docs/worker-protocol.md; defined in
src/runtime/worker/protocol.rs, whose names reach this package as constants.py): framing, the replies, the
rows of a results frame and their JSON."""

import array
import json
import os
import struct
import sys
import time

from .constants import OP_BEAT, OP_EXITING, OP_LOADED, OP_STUCK, RAISED, RESULTS_TAG, UNCHANGED

try:
    # Braid's native module (src/runtime/worker/native.rs), in a worker Braid started: JSON and results
    # frames written in Rust. Absent in a plain Python (the package's tests, a Python with no Braid in
    # it), where this module does everything itself.
    from braid_native import from_json as native_loads
    from braid_native import pack_results as _native_pack_results
    from braid_native import results_frame as _native_results_frame
    from braid_native import to_json as _native_json
except ImportError:
    _native_results_frame = _native_pack_results = None

    def native_loads(_text):
        """Python's json reads it (None: not read here)."""

    def _native_json(_value):
        """Python's json encodes it (None: not encoded here)."""


# One clock read per timestamp, relative to the worker's start (sent as wall-clock time with each
# results frame).
START_NS = time.monotonic_ns()
START_WALL_US = time.time_ns() // 1000


# ----- framing: a 4-byte little-endian length, then the body -----
def read_exact(fd, n):
    """n bytes from fd, or None once it has ended."""
    chunks = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


# Bodies from this size on are written apart from their header.
LARGE_FRAME = 1 << 16


def read_frame(fd):
    """The next frame's body, or None once fd has ended."""
    header = read_exact(fd, 4)
    if header is None:
        return None
    return read_exact(fd, int.from_bytes(header, "little"))


def write_frame(fd, body):
    header = len(body).to_bytes(4, "little")
    if len(body) < LARGE_FRAME:
        _write_all(fd, header + body)
    else:
        # Apart: joined, a body of megabytes (a fan-out's return value and its items' names) would be
        # copied once more for nothing.
        _write_all(fd, header)
        _write_all(fd, body)


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def read_request(body):
    """A JSON request (a run request is decoded by the thread that runs it: see unpack in loop.py)."""
    return json.loads(body)


# ----- replies (JSON) -----
def message(reply):
    """A JSON reply's body."""
    return json.dumps(reply, separators=(",", ":")).encode()


def load_error(block, if_index, line, text, fan_out=None):
    """A block's code (if_index and fan_out None), one of its `if` expressions, or one of its fan-outs'
    item key or label expressions that does not compile."""
    return {"block": block, "if": if_index, "fan_out": fan_out, "line": line, "message": text}


def loaded(program, errors):
    return {"op": OP_LOADED, "program": program, "errors": errors}


def exiting(key, code):
    return {"op": OP_EXITING, "key": key, "code": code}


def stuck(key):
    return {"op": OP_STUCK, "key": key}


def beat():
    return {"op": OP_BEAT}


# ----- result rows -----
def full_row(key, t0, duration, value, backpack, status, ifs, stdout, stderr, error, items=None):
    """The row of an invocation that raised, printed, has `if`s or named its fan-outs' items: t0 and
    duration in nanoseconds (t0 after START_NS), backpack UNCHANGED for the one it was given, error from
    error() or None, items None or one [keys, labels] per fan-out of the block. A short row (returned,
    printed nothing, no `if`s, no item names) is the tuple (key, t0, duration, value, backpack)."""
    return [key, t0, duration, value, backpack, status, ifs, stdout, stderr, error, items]


# The positions of a full row's texts.
_STDOUT, _STDERR, _ERROR = 7, 8, 9


def error(kind, text, traceback="", line=None):
    """A failed invocation's error: the exception's type, its message, the traceback and the line in the
    block's code."""
    return [kind, text, traceback, line]


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


def fast_json(value):
    """`value` as JSON in UTF-8. Text that is not Unicode (a lone surrogate: bytes that were not UTF-8,
    kept by os.fsdecode or errors="surrogateescape") raises UnicodeEncodeError, a ValueError, like any
    other value JSON can't hold. No circular check (it costs a third of the encoding): a cyclic value
    recurses until RecursionError and is then found by a checked pass. Values of the plain built-in
    types are encoded in Rust (native.rs) where Braid started the worker, about six times as fast."""
    encoded = _native_json(value)
    if encoded is not None:
        return encoded
    return _FAST_ENCODE(value).encode()


def checked_json(value):
    """`fast_json` with the circular check, for finding the value that failed."""
    return _CHECKED_ENCODE(value).encode()


def clean_text(text):
    """Text with each lone surrogate (or the byte it stands for) replaced by U+FFFD, for display."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _clean_texts(row):
    """A full row with its printed output and error text made displayable (see clean_text)."""
    row = list(row)
    row[_STDOUT] = clean_text(row[_STDOUT])
    row[_STDERR] = clean_text(row[_STDERR])
    if row[_ERROR] is not None:
        row[_ERROR] = [clean_text(part) if isinstance(part, str) else part for part in row[_ERROR]]
    return row


def unencodable(row, exc):
    """The full row of an invocation whose return value (or backpack) is not JSON: it fails, naming the
    type. `row` is a short row or a full one."""
    key, t0, duration, value, backpack = row[:5]
    out, err = (clean_text(row[_STDOUT]), clean_text(row[_STDERR])) if len(row) > 5 else ("", "")
    what, bad_value = "return value", value
    try:
        checked_json(value)
        what, bad_value = "backpack", backpack
    except (TypeError, ValueError, RecursionError):
        pass
    if isinstance(exc, UnicodeEncodeError):
        bad = exc.object[exc.start : exc.end]
        failure = error(
            "ValueError",
            f"the {what} holds text that is not Unicode: {bad!r} (bytes that were not UTF-8, kept by os.fsdecode or"
            " errors='surrogateescape'); decode such bytes with errors='replace', or pass them as base64",
        )
    else:
        failure = error("TypeError", f"the {what} is not JSON-serialisable: {type(bad_value).__name__} ({exc})")
    safe_backpack = None
    if what == "return value":
        try:
            checked_json(backpack)
            safe_backpack = backpack
        except (TypeError, ValueError, RecursionError):
            pass
    return full_row(key, t0, duration, None, safe_backpack, RAISED, [], out, err, failure)


def encode_rows(rows):
    """One JSON text (UTF-8) for a list of full rows. Printed text and error messages with text that is
    not Unicode are shown with U+FFFD in its place; a row whose value can't be encoded fails alone."""
    try:
        return fast_json(rows)
    except (TypeError, ValueError, RecursionError):
        pass
    parts = []
    for row in rows:
        try:
            parts.append(checked_json(row))
            continue
        except UnicodeEncodeError:
            row = _clean_texts(row)
        except (TypeError, ValueError, RecursionError) as e:
            parts.append(checked_json(unencodable(row, e)))
            continue
        try:
            parts.append(checked_json(row))
        except (TypeError, ValueError, RecursionError) as e:
            parts.append(checked_json(unencodable(row, e)))
    return b"[" + b",".join(parts) + b"]"


# ----- results frames -----
def pack_results_plain(start_wall_us, keys, t0s, durations, values, backpacks, full):
    """A results frame's bytes (docs/worker-protocol.md) from its parts: the short rows' columns, their
    values and backpacks as JSON lists (backpacks None: all UNCHANGED), the full rows as a JSON list.
    Braid's native module packs them itself (the same bytes: a test in protocol.rs checks it)."""
    columns = array.array("q", [*keys, *t0s, *durations])
    if sys.byteorder != "little":
        columns.byteswap()
    if backpacks is None:
        backpacks = b"%d" % UNCHANGED
    return b"".join(
        (
            RESULTS_TAG,
            struct.pack("<QI", start_wall_us, len(keys)),
            columns.tobytes(),
            struct.pack("<I", len(values)),
            values,
            struct.pack("<I", len(backpacks)),
            backpacks,
            struct.pack("<I", len(full)),
            full,
        )
    )


pack_results = _native_pack_results or pack_results_plain


def results_frame(rows, full_rows):
    """The results frame for short rows and full rows. A short row whose value can't be encoded
    becomes a full row that fails alone."""
    if _native_results_frame is not None:
        frame = _native_results_frame(rows, full_rows, START_WALL_US)
        if frame is not None:
            return frame
    try:
        values = fast_json([row[3] for row in rows])
        backpacks = [row[4] for row in rows]
        backpacks = None if backpacks.count(UNCHANGED) == len(backpacks) else fast_json(backpacks)
    except (TypeError, ValueError, RecursionError):
        # Some value is not JSON: find the rows it is in (checked), and let them fail alone.
        good = []
        for row in rows:
            try:
                checked_json(row)
                good.append(row)
            except (TypeError, ValueError, RecursionError) as e:
                full_rows.append(unencodable(row, e))
        return results_frame(good, full_rows)
    keys, t0s, durations = ([row[i] for row in rows] for i in range(3))
    return pack_results(START_WALL_US, keys, t0s, durations, values, backpacks, encode_rows(full_rows))
