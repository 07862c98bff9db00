import sys
import threading

from braid_worker import isolation
from braid_worker.capture import tls


def test_a_blocks_variables_are_laid_over_the_environment_of_its_thread_only():
    real = {"HOME": "/home/u", "TOKEN": "process"}
    environ = isolation.BlockEnviron(real)
    seen = {}

    def run(name, overlay):
        tls.env = overlay
        seen[name] = (environ.get("TOKEN"), environ["HOME"], sorted(environ))

    threads = [
        threading.Thread(target=run, args=("a", {"TOKEN": "a's"})),
        threading.Thread(target=run, args=("b", None)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {"a": ("a's", "/home/u", ["HOME", "TOKEN"]), "b": ("process", "/home/u", ["HOME", "TOKEN"])}
    assert real == {"HOME": "/home/u", "TOKEN": "process"}


def test_a_module_is_patched_as_soon_as_it_is_imported(monkeypatch):
    patched = []
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    finder = isolation.WhenImported("colorsys", patched.append)
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    import colorsys

    assert patched == [colorsys]
    assert finder not in sys.meta_path
