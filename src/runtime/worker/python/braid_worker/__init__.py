"""Braid's Python worker: runs Code Block invocations for the Braid process that started it, over the
protocol in docs/worker-protocol.md. Braid embeds this package and loads it from memory (mod.rs); it
also imports as a plain package in any Python, without Braid's native module (its tests do that).

Modules: constants (written by Braid from protocol.rs), protocol (frames, replies, result rows),
capture (printed output per invocation), isolation (what one invocation must not leave to the next),
loop (requests, exec threads, timeouts; main)."""
