"""Printed output, per invocation: sys.stdout and sys.stderr as blocks see them collect what each
invocation's thread prints (and the threads it started, see isolation.py)."""

import io
import sys
import threading

# Per thread: `capture`, its [stdout, stderr] buffers (None until it prints); `slot`, an exec thread's
# [key, started, timeout, interrupted] (loop.py); `owner`, for a thread an invocation started, that
# invocation's (capture, env, slot, key); `env`, the running block's variables (isolation.py).
tls = threading.local()
_real_stderr = sys.__stderr__

# The most printed text kept per invocation and stream (characters). A print in a runaway loop would
# otherwise fill memory until the timeout, then take seconds to send; the first part is what explains
# the loop anyway.
CAPTURE_LIMIT = 1 << 20


class Capture(io.TextIOBase):
    """sys.stdout/sys.stderr: each invocation's thread collects its own printed text. A text stream in
    full (`buffer`, `reconfigure`, `fileno` raising io.UnsupportedOperation as StringIO's does...), so
    code written for a terminal runs unchanged; it can't be closed, since later invocations print to it."""

    def __init__(self, index):
        super().__init__()
        self._index = index
        self._buffer = _CaptureBytes(self)

    def write(self, text):
        capture = getattr(tls, "capture", None)
        if capture is None:
            return _real_stderr.write(text)
        owner = getattr(tls, "owner", None)
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


STDOUT = Capture(0)
STDERR = Capture(1)


def captured(buf):
    """An invocation's printed text from its capture buffer (see Capture.write), with a note when some
    of it was dropped."""
    if buf is None:
        return ""
    text = "".join(buf[1:])
    dropped = buf[0] - CAPTURE_LIMIT
    if dropped > 0:
        text += f"\n[Braid kept the first {CAPTURE_LIMIT:,} characters of this output; {dropped:,} more were dropped]\n"
    return text
