import threading

from braid_worker import capture


def test_each_thread_collects_what_it_prints():
    seen = {}

    def run(name):
        capture.tls.capture = [None, None]
        capture.STDOUT.write(f"{name} out\n")
        capture.STDERR.buffer.write(f"{name} \u2603\n".encode())
        seen[name] = [capture.captured(buf) for buf in capture.tls.capture]

    threads = [threading.Thread(target=run, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {"a": ["a out\n", "a \u2603\n"], "b": ["b out\n", "b \u2603\n"]}


def test_printed_text_past_the_limit_is_dropped_with_a_note(monkeypatch):
    monkeypatch.setattr(capture, "CAPTURE_LIMIT", 10)
    capture.tls.capture = [None, None]
    try:
        capture.STDOUT.write("0123456")
        capture.STDOUT.write("789abcdef")
        text = capture.captured(capture.tls.capture[0])
    finally:
        capture.tls.capture = None
    assert text == "0123456789\n[Braid kept the first 10 characters of this output; 6 more were dropped]\n"
