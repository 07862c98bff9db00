# Written by Braid from src/runtime/worker/protocol.rs (python_constants): do not edit.
# `cargo test` checks that this file is what the Rust definitions say.
# The protocol itself: docs/worker-protocol.md.

# Requests (Braid to the worker): their `op`.
OP_LOAD = "load"
OP_RUN = "run"
OP_CANCEL = "cancel"
OP_UNLOAD = "unload"

# How a run request starts.
RUN_PREFIX = b'{"op":"run",'

# Replies (the worker to Braid): their `op` (results go in a binary frame).
OP_LOADED = "loaded"
OP_EXITING = "exiting"
OP_STUCK = "stuck"
OP_BEAT = "beat"

# The first byte of a results frame.
RESULTS_TAG = b"R"

# A result row's status.
RETURNED = 0
RAISED = 1
TIMED_OUT = 2
CANCELLED = 3

# A backpack that is the one the invocation was given, unchanged.
UNCHANGED = 0

# How a worker whose pipes to Braid were closed under it exits.
EXIT_PIPES_CLOSED = 75

# Why the native loop handed a batch back.
NATIVE_EXHAUSTED = 0
NATIVE_FLUSH = 1
NATIVE_RAISED = 2
NATIVE_PRINTED = 3
NATIVE_CANCELLING = 4
