//! The worker's hot loop for plain invocations, in Rust: a big fan-out's items that start with a fresh
//! backpack, on a block with no `if`s and no variables. Per invocation it does what `loop.py`'s loop
//! does (time it, mark the thread's timeout slot, call `main`, queue the short result row) without
//! running any Python bytecode of its own. Everything else (a raise, printed output, a cancel, the
//! first call that loads the block) goes back to `loop.py`, which handles it in Python. This is
//! also where the worker writes JSON and results frames (through `protocol.rs`'s writer).

use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyBytes, PyDict, PyFloat, PyInt, PyIterator, PyList, PySet, PyString, PyTuple,
};

use super::protocol::{NativeStop, ResultsParts, UNCHANGED, write_results};

/// The clock `time.monotonic_ns` reads, so the monitor thread and this loop agree on times.
fn monotonic_ns() -> i64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    now.tv_sec * 1_000_000_000 + now.tv_nsec
}

/// Runs the batch's tasks (`(key, input, fresh marker)` tuples from the shared iterator `tasks`) until
/// one needs `loop.py`, or `room` results have been queued on `out`, or one ran longer than
/// `flush_after_ns`. Puts into `hand[0]` (rather than returning it: an interrupt landing as the call
/// returns would lose a return value, and with it the invocation) `(why, …)`, `why` a [`NativeStop`]
/// and after it what that says (the slot is cleared after a raise).
///
/// `slot` is the thread's `[key, started, timeout, interrupted]` list, `capture` its `[stdout, stderr]`
/// buffers (None until the code prints), `cancelled` the worker's set of keys to stop, `streams`
/// `(sys.__dict__, stdout, stderr)`: an invocation after which sys's streams are others (the block
/// reassigned them) is handed back as `Printed`, for `loop.py` to put them back.
#[pyfunction]
#[pyo3(signature = (hand, tasks, main, slot, capture, cancelled, out, timeout_ns, start_ns, room, flush_after_ns, streams))]
#[allow(clippy::too_many_arguments)] // one call per batch, mirroring loop.py's locals
pub fn run_plain<'py>(
    py: Python<'py>,
    hand: &Bound<'py, PyList>,
    tasks: &Bound<'py, PyIterator>,
    main: &Bound<'py, PyAny>,
    slot: &Bound<'py, PyList>,
    capture: &Bound<'py, PyList>,
    cancelled: &Bound<'py, PySet>,
    out: &Bound<'py, PyAny>,
    timeout_ns: i64,
    start_ns: i64,
    room: usize,
    flush_after_ns: i64,
    streams: &Bound<'py, PyTuple>,
) -> PyResult<()> {
    let none = py.None().into_bound(py);
    let sys = streams.get_item(0)?.cast_into::<PyDict>()?;
    let (stdout, stderr) = (streams.get_item(1)?, streams.get_item(2)?);
    let (stdout_key, stderr_key) = (intern!(py, "stdout"), intern!(py, "stderr"));
    let is_ours = |key: &Bound<'py, pyo3::types::PyString>, ours: &Bound<'py, PyAny>| {
        sys.get_item(key)
            .map(|now| now.is_some_and(|now| now.is(ours)))
    };
    let append = out.getattr("append")?;
    let mut tasks = tasks.clone();
    let stop = |why: NativeStop, rest: &[&Bound<'py, PyAny>]| {
        let mut items: Vec<Bound<'py, PyAny>> = vec![(why as u8).into_pyobject(py)?.into_any()];
        items.extend(rest.iter().map(|b| (*b).clone()));
        hand.set_item(0, PyTuple::new(py, items)?)
    };
    for _ in 0..room {
        let Some(task) = tasks.next() else {
            return stop(NativeStop::Exhausted, &[]);
        };
        let task = task?;
        let task_tuple = task
            .cast::<PyTuple>()
            .map_err(|_| PyTypeError::new_err("a task is a (key, input, backpack) tuple"))?;
        let key = task_tuple.get_item(0)?;
        if !cancelled.is_empty() && cancelled.contains(&key)? {
            return stop(NativeStop::Cancelling, &[&task]);
        }
        let input = task_tuple.get_item(1)?;
        let backpack = PyDict::new(py);
        let m0 = monotonic_ns();
        slot.set_item(2, timeout_ns)?;
        slot.set_item(3, &none)?;
        slot.set_item(1, m0)?;
        // The key last: the monitor reads a slot as in use from it.
        slot.set_item(0, &key)?;
        let returned = main.call1((&input, &backpack));
        slot.set_item(0, &none)?;
        let m1 = monotonic_ns();
        let (t0, duration) = (
            (m0 - start_ns).into_pyobject(py)?,
            (m1 - m0).into_pyobject(py)?,
        );
        let value = match returned {
            Ok(value) => value,
            Err(error) => {
                // loop.py tells a cancel meant for this one from a stale one by `cancelled`.
                let error = error.into_value(py).into_bound(py).into_any();
                return stop(
                    NativeStop::Raised,
                    &[&task, backpack.as_any(), &error, &t0, &duration],
                );
            }
        };
        if !cancelled.is_empty() {
            cancelled.discard(&key)?;
        }
        if !capture.get_item(0)?.is_none()
            || !capture.get_item(1)?.is_none()
            || !is_ours(stdout_key, &stdout)?
            || !is_ours(stderr_key, &stderr)?
        {
            return stop(
                NativeStop::Printed,
                &[&task, backpack.as_any(), &value, &t0, &duration],
            );
        }
        let backpack_out = if backpack.is_empty() {
            UNCHANGED.into_pyobject(py)?.into_any()
        } else {
            backpack.into_any()
        };
        append.call1((PyTuple::new(
            py,
            [
                &key,
                &t0.into_any(),
                &duration.into_any(),
                &value,
                &backpack_out,
            ],
        )?,))?;
        if m1 - m0 > flush_after_ns {
            return stop(NativeStop::Flush, &[]);
        }
    }
    stop(NativeStop::Flush, &[])
}

/// Values nested deeper than this go to Python's encoder (and so on to the parent's own depth check).
const MAX_DEPTH: usize = 100;

/// `value` as JSON (UTF-8), or `None` when it holds anything but the exact built-in types a value
/// mostly is (`None`, `bool`, an `int` of 64 bits, a finite `float`, `str`, `list`, `tuple`, and
/// `dict` with `str` keys), or nests deeper than [`MAX_DEPTH`]. `protocol.py` then encodes it with
/// Python's `json`, so every other case (numpy values, `NaN`, other key types, subclasses, cycles,
/// text that is not Unicode) behaves as `json` has it. About six times as fast as Python's
/// encoder (1.4 against 8 ms for a list of 100,000 numbers, which a fan-out waits for).
#[pyfunction]
pub fn to_json<'py>(py: Python<'py>, value: &Bound<'py, PyAny>) -> Option<Bound<'py, PyBytes>> {
    let mut out = Vec::with_capacity(256);
    write_json(value, &mut out, 0).then(|| PyBytes::new(py, &out))
}

fn write_json(value: &Bound<'_, PyAny>, out: &mut Vec<u8>, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    if value.is_none() {
        out.extend_from_slice(b"null");
    } else if let Ok(flag) = value.cast_exact::<PyBool>() {
        out.extend_from_slice(if flag.is_true() { b"true" } else { b"false" });
    } else if value.is_exact_instance_of::<PyInt>() {
        let Ok(number) = value.extract::<i64>() else {
            return false;
        };
        if serde_json::to_writer(&mut *out, &number).is_err() {
            return false;
        }
    } else if let Ok(number) = value.cast_exact::<PyFloat>() {
        let number = number.value();
        if !number.is_finite() {
            return false;
        }
        // Shortest round-trip form; an integral float keeps its ".0", so it stays a float.
        if serde_json::to_writer(&mut *out, &number).is_err() {
            return false;
        }
    } else if let Ok(text) = value.cast_exact::<PyString>() {
        let Ok(text) = text.to_str() else {
            return false;
        };
        if serde_json::to_writer(&mut *out, text).is_err() {
            return false;
        }
    } else if let Ok(list) = value.cast_exact::<PyList>() {
        return write_array(list.iter(), out, depth);
    } else if let Ok(tuple) = value.cast_exact::<PyTuple>() {
        return write_array(tuple.iter(), out, depth);
    } else if let Ok(dict) = value.cast_exact::<PyDict>() {
        out.push(b'{');
        for (i, (key, item)) in dict.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let Ok(key) = key.cast_exact::<PyString>() else {
                return false;
            };
            let Ok(key) = key.to_str() else {
                return false;
            };
            if serde_json::to_writer(&mut *out, key).is_err() {
                return false;
            }
            out.push(b':');
            if !write_json(&item, out, depth + 1) {
                return false;
            }
        }
        out.push(b'}');
    } else {
        return false;
    }
    true
}

fn write_array<'py>(
    items: impl Iterator<Item = Bound<'py, PyAny>>,
    out: &mut Vec<u8>,
    depth: usize,
) -> bool {
    out.push(b'[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if !write_json(&item, out, depth + 1) {
            return false;
        }
    }
    out.push(b']');
    true
}

/// A results frame (`protocol.rs`) for the short rows `rows` (`(key, t0, duration, value, backpack)`
/// tuples) and the full rows `full` (lists). `None` when a value in them is one [`to_json`] leaves to
/// Python: `protocol.py` then encodes them itself, finding the rows that can't be encoded. Built in
/// Python, a frame of 256 rows took more time than running its 256 trivial invocations.
#[pyfunction]
pub fn results_frame<'py>(
    py: Python<'py>,
    rows: &Bound<'py, PyList>,
    full: &Bound<'py, PyAny>,
    start_wall_us: u64,
) -> Option<Bound<'py, PyBytes>> {
    let n = rows.len();
    let (mut keys, mut t0s, mut durations) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let mut values = Vec::with_capacity(8 * n + 2);
    let mut backpacks = Vec::new();
    let mut changed = false;
    values.push(b'[');
    for (i, row) in rows.iter().enumerate() {
        let row = row.cast_exact::<PyTuple>().ok()?;
        if row.len() != 5 {
            return None;
        }
        keys.push(row.get_item(0).ok()?.extract::<i64>().ok()?);
        t0s.push(row.get_item(1).ok()?.extract::<i64>().ok()?);
        durations.push(row.get_item(2).ok()?.extract::<i64>().ok()?);
        if i > 0 {
            values.push(b',');
        }
        if !write_json(&row.get_item(3).ok()?, &mut values, 1) {
            return None;
        }
        let backpack = row.get_item(4).ok()?;
        changed |= !(backpack.is_exact_instance_of::<PyInt>()
            && backpack.extract::<i64>().ok()? == UNCHANGED);
        backpacks.push(backpack);
    }
    values.push(b']');
    let backpacks = if changed {
        let mut out = Vec::with_capacity(4 * n + 2);
        write_array(backpacks.into_iter(), &mut out, 0).then_some(out)?
    } else {
        Vec::new()
    };
    let mut full_json = Vec::new();
    if !write_json(full, &mut full_json, 0) {
        return None;
    }
    let frame = write_results(&ResultsParts {
        start_wall_us,
        keys: &keys,
        t0s: &t0s,
        durations: &durations,
        values: &values,
        backpacks: changed.then_some(&backpacks[..]),
        full: &full_json,
    })?;
    Some(PyBytes::new(py, &frame))
}

/// A results frame from its parts, for `protocol.py` when it encoded the values itself (see
/// `pack_results_plain` there, which packs the same bytes in a Python without this module).
#[pyfunction]
#[allow(
    clippy::too_many_arguments,
    clippy::needless_pass_by_value,
    reason = "the frame's parts as protocol.py has them; pyo3 extracts a Python list as a Vec, not a slice"
)]
pub fn pack_results<'py>(
    py: Python<'py>,
    start_wall_us: u64,
    keys: Vec<i64>,
    t0s: Vec<i64>,
    durations: Vec<i64>,
    values: &[u8],
    backpacks: Option<&[u8]>,
    full: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    let frame = write_results(&ResultsParts {
        start_wall_us,
        keys: &keys,
        t0s: &t0s,
        durations: &durations,
        values,
        backpacks,
        full,
    })
    .ok_or_else(|| {
        pyo3::exceptions::PyValueError::new_err(
            "a results frame past 4 GiB, or columns of unequal length",
        )
    })?;
    Ok(PyBytes::new(py, &frame))
}

/// A JSON text (a run frame from the parent) as Python values, or `None` when `serde_json` does not
/// take it (nesting past its limit, a lone surrogate escape, `NaN`…): `loop.py` then reads it with
/// `json.loads`. Both give the same values for what the parent writes: it writes
/// `serde_json`'s own output. This takes about half the time of `json.loads` (15 against 32 µs for a
/// frame of 256 items; 9 against 13 ms for a 100,000-item fan-in's input).
#[pyfunction]
pub fn from_json<'py>(py: Python<'py>, text: &[u8]) -> Option<Bound<'py, PyAny>> {
    use serde::de::DeserializeSeed as _;
    let mut reader = serde_json::Deserializer::from_slice(text);
    let value = PyValue(py).deserialize(&mut reader).ok()?;
    reader.end().ok()?;
    Some(value)
}

/// Builds Python values straight from the JSON reader, without a `serde_json::Value` between.
#[derive(Clone, Copy)]
struct PyValue<'py>(Python<'py>);

impl<'de, 'py> serde::de::DeserializeSeed<'de> for PyValue<'py> {
    type Value = Bound<'py, PyAny>;

    fn deserialize<D: serde::Deserializer<'de>>(self, reader: D) -> Result<Self::Value, D::Error> {
        reader.deserialize_any(self)
    }
}

impl<'de, 'py> serde::de::Visitor<'de> for PyValue<'py> {
    type Value = Bound<'py, PyAny>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(self.0.None().into_bound(self.0))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(PyBool::new(self.0, v).to_owned().into_any())
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into_pyobject(self.0).map_err(E::custom)?.into_any())
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into_pyobject(self.0).map_err(E::custom)?.into_any())
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(PyFloat::new(self.0, v).into_any())
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(PyString::new(self.0, v).into_any())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(PyList::new(self.0, items)
            .map_err(serde::de::Error::custom)?
            .into_any())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let dict = PyDict::new(self.0);
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let value = map.next_value_seed(self)?;
            dict.set_item(PyString::new(self.0, &key), value)
                .map_err(serde::de::Error::custom)?;
        }
        Ok(dict.into_any())
    }
}

/// Makes `braid_native` importable by the `braid_worker` package.
pub fn register(py: Python<'_>) -> PyResult<()> {
    let module = PyModule::new(py, "braid_native")?;
    module.add_function(wrap_pyfunction!(run_plain, &module)?)?;
    module.add_function(wrap_pyfunction!(to_json, &module)?)?;
    module.add_function(wrap_pyfunction!(from_json, &module)?)?;
    module.add_function(wrap_pyfunction!(results_frame, &module)?)?;
    module.add_function(wrap_pyfunction!(pack_results, &module)?)?;
    py.import("sys")?
        .getattr("modules")?
        .set_item("braid_native", module)
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;

    use serde_json::{Value, json};

    use super::super::protocol::{Reply, Status, read_reply};
    use super::*;

    /// The frames the worker writes in Rust read back as their rows: keys, times, values, backpacks
    /// (unchanged when all were, else each its own) and full rows. A row it can't encode leaves the
    /// frame to Python.
    #[test]
    fn a_native_results_frame_reads_back_as_its_rows() {
        Python::attach(|py| {
            let list = |code: &std::ffi::CStr| {
                py.eval(code, None, None)
                    .unwrap()
                    .cast_into::<PyList>()
                    .unwrap()
            };
            let read = |rows: &Bound<'_, PyList>, full: &Bound<'_, PyList>| {
                let frame = results_frame(py, rows, full, 1_000_000).expect("plain values");
                match read_reply(frame.as_bytes()).unwrap() {
                    Reply::Results(results) => results,
                    other => panic!("{other:?}"),
                }
            };
            let none = list(c"[]");
            let results = read(
                &list(c"[(7, 10, 5, [1, 'a'], 0), (2**40, 20, 6, {'k': 2.5}, 0), (9, 30, 7, None, 0)]"),
                &none,
            );
            assert_eq!(results.start_wall_us, 1_000_000);
            let got: Vec<_> = results
                .rows
                .iter()
                .map(|r| {
                    (
                        r.key,
                        r.t0_ns,
                        r.duration_ns,
                        r.value.clone(),
                        r.backpack.clone(),
                    )
                })
                .collect();
            assert_eq!(
                got,
                [
                    (7, 10, 5, json!([1, "a"]), None),
                    (1 << 40, 20, 6, json!({"k": 2.5}), None),
                    (9, 30, 7, Value::Null, None),
                ]
            );
            let results = read(
                &list(c"[(1, 0, 1, 2, 0), (2, 0, 1, 4, {'seen': True})]"),
                &list(c"[[3, 5, 6, None, {'b': 1}, 1, [], 'out', '', ['KeyError', \"'x'\", 'tb', 2]]]"),
            );
            let backpacks: Vec<_> = results.rows.iter().map(|r| r.backpack.clone()).collect();
            assert_eq!(
                backpacks,
                [None, Some(json!({"seen": true})), Some(json!({"b": 1}))]
            );
            let full = &results.rows[2];
            assert_eq!(
                (full.key, full.status, full.stdout.as_str()),
                (3, Status::Raised, "out")
            );
            assert_eq!(
                full.error.as_ref().map(|e| (e.kind.as_str(), e.line)),
                Some(("KeyError", Some(2)))
            );
            assert!(read(&none, &none).rows.is_empty());
            assert!(results_frame(py, &list(c"[(1, 0, 1, float('nan'), 0)]"), &none, 0).is_none());
            assert!(
                results_frame(
                    py,
                    &none,
                    &list(c"[[1, 0, 1, {1}, 0, 0, [], '', '', None]]"),
                    0
                )
                .is_none()
            );
        });
    }

    /// Plain values come back from JSON as they went in (tuples as lists); anything else is left to
    /// Python's encoder (`None`), which then treats it as `json` does.
    #[test]
    fn to_json_encodes_plain_values_and_leaves_the_rest_to_python() {
        Python::attach(|py| {
            let code = CString::new(
                "import enum, json\n\
                 class Level(enum.IntEnum):\n\
                 \x20   LOW = 1\n\
                 class Array:\n\
                 \x20   def tolist(self):\n\
                 \x20       return [1]\n\
                 deep = []\n\
                 for _ in range(150):\n\
                 \x20   deep = [deep]\n\
                 plain = [None, True, False, 0, -7, 2**63 - 1, -2**63, 0.1, 2.0, -1e-300, 1e300,\n\
                 \x20        '', 'tab\\t quote\" back\\\\ nul\\x00 snow\\u2603 face\\U0001F600',\n\
                 \x20        [], {}, (1, 'a'), {'k': {'n': [1, {'x': None}]}, 'é': 1.5}]\n\
                 other = [float('nan'), float('inf'), 2**64, Level.LOW, {1: 'a'}, {None: 1},\n\
                 \x20        'lone \\udc80', Array(), {1, 2}, b'bytes', deep, [1, [2, Array()]]]\n",
            )
            .unwrap();
            let module = PyModule::from_code(py, &code, c"j.py", c"j").unwrap();
            let json = py.import("json").unwrap();
            let plain = module.getattr("plain").unwrap();
            for value in plain.cast::<PyList>().unwrap().iter() {
                let encoded = to_json(py, &value).expect("plain value");
                let back = json.call_method1("loads", (encoded.as_bytes(),)).unwrap();
                let expected = if value.is_exact_instance_of::<PyTuple>() {
                    pyo3::types::PyList::new(py, value.cast::<PyTuple>().unwrap().iter())
                        .unwrap()
                        .into_any()
                } else {
                    value.clone()
                };
                assert!(back.eq(&expected).unwrap(), "{value} came back as {back}");
                // A float stays a float (2.0 is not written as 2).
                assert!(back.get_type().is(expected.get_type()), "{value}");
            }
            let other = module.getattr("other").unwrap();
            for value in other.cast::<PyList>().unwrap().iter() {
                assert!(to_json(py, &value).is_none(), "{value:?}");
            }
        });
    }

    /// What the parent writes reads as `json.loads` reads it; what `serde_json` refuses is left to
    /// it.
    #[test]
    fn from_json_reads_as_json_loads_does_and_leaves_the_rest_to_it() {
        Python::attach(|py| {
            let json = py.import("json").unwrap();
            for text in [
                r#"{"op":"run","keys":[1,2],"inputs":[0,-7,18446744073709551615,-9223372036854775808]}"#,
                r#"[null,true,false,0.1,2.0,-0.0,1e300,"","tab\t \"q\" \\ \u0000 \u2603 \ud83d\ude00 é"]"#,
                r#"{"a":{"b":[{}]},"a":1,"c":[]}"#,
                " [1, 2] ",
            ] {
                let ours = from_json(py, text.as_bytes()).expect(text);
                let theirs = json.call_method1("loads", (text,)).unwrap();
                assert!(ours.eq(&theirs).unwrap(), "{text}: {ours} against {theirs}");
                assert_eq!(
                    ours.repr().unwrap().to_string(),
                    theirs.repr().unwrap().to_string()
                );
            }
            let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
            for text in ["NaN", "[1,", "[1] x", r#""\udc80""#, deep.as_str()] {
                assert!(from_json(py, text.as_bytes()).is_none(), "{text}");
            }
        });
    }

    /// Each way the loop stops, with a block's `main` and the worker's lists made in Python.
    #[test]
    fn the_native_loop_runs_plain_invocations_and_hands_back_the_rest() {
        Python::attach(|py| {
            let code = CString::new(
                "import sys\n\
                 streams = (sys.__dict__, sys.stdout, sys.stderr)\n\
                 slot = [None, 0, 0, None]\n\
                 capture = [None, None]\n\
                 cancelled = {107}\n\
                 out = []\n\
                 hand = [None]\n\
                 def main(x, backpack):\n\
                 \x20   if x == 3:\n\
                 \x20       raise ValueError('three')\n\
                 \x20   if x == 4:\n\
                 \x20       capture[0] = [5, 'hello']\n\
                 \x20   if x == 5:\n\
                 \x20       backpack['seen'] = x\n\
                 \x20   if x == 6:\n\
                 \x20       sys.stderr = None\n\
                 \x20   assert slot[0] == 100 + x, slot\n\
                 \x20   return x * 2\n\
                 tasks = iter([(100 + x, x, None) for x in range(9)])\n",
            )
            .unwrap();
            let module = PyModule::from_code(py, &code, c"t.py", c"t").unwrap();
            let get = |name: &str| module.getattr(name).unwrap();
            let tasks = get("tasks").cast_into::<PyIterator>().unwrap();
            let call = |room: usize| {
                let hand = get("hand");
                let hand = hand.cast::<PyList>().unwrap();
                run_plain(
                    py,
                    hand,
                    &tasks,
                    &get("main"),
                    get("slot").cast::<PyList>().unwrap(),
                    get("capture").cast::<PyList>().unwrap(),
                    get("cancelled").cast::<PySet>().unwrap(),
                    &get("out"),
                    10_000_000_000,
                    0,
                    room,
                    2_000_000,
                    get("streams").cast::<PyTuple>().unwrap(),
                )
                .unwrap();
                hand.get_item(0).unwrap().cast_into::<PyTuple>().unwrap()
            };
            let why =
                |stop: &Bound<'_, PyTuple>| stop.get_item(0).unwrap().extract::<u8>().unwrap();
            // The key of the task handed back.
            let key_of = |stop: &Bound<'_, PyTuple>| {
                let task = stop.get_item(1).unwrap();
                task.get_item(0).unwrap().extract::<i64>().unwrap()
            };
            // Room for two: 0 and 1 run, then a flush is due. Then 2 runs and 3 raises.
            assert_eq!(why(&call(2)), NativeStop::Flush as u8);
            let stop = call(10);
            assert_eq!(why(&stop), NativeStop::Raised as u8);
            assert_eq!(key_of(&stop), 103);
            assert!(stop.get_item(3).unwrap().to_string().contains("three"));
            assert!(
                get("slot").get_item(0).unwrap().is_none(),
                "the slot is free after a raise"
            );
            let stop = call(10);
            assert_eq!(why(&stop), NativeStop::Printed as u8);
            assert_eq!(stop.get_item(3).unwrap().extract::<i64>().unwrap(), 8);
            get("capture").set_item(0, py.None()).unwrap();
            // 5 changes its backpack; 6 reassigns sys.stderr: handed back for loop.py to put it back.
            let stop = call(10);
            assert_eq!(why(&stop), NativeStop::Printed as u8);
            assert_eq!(key_of(&stop), 106);
            let streams = get("streams");
            py.import("sys")
                .unwrap()
                .setattr("stderr", streams.get_item(2).unwrap())
                .unwrap();
            // 7 was cancelled: handed back unrun.
            let stop = call(10);
            assert_eq!(why(&stop), NativeStop::Cancelling as u8);
            assert_eq!(key_of(&stop), 107);
            assert_eq!(why(&call(10)), NativeStop::Exhausted as u8);
            let rows: Vec<(i64, i64, i64, i64, Bound<'_, PyAny>)> = get("out").extract().unwrap();
            let keys: Vec<i64> = rows.iter().map(|r| r.0).collect();
            assert_eq!(keys, [100, 101, 102, 105, 108]);
            assert!(rows.iter().all(|r| r.3 == (r.0 - 100) * 2 && r.2 >= 0));
            assert_eq!(
                rows[1].4.extract::<i64>().unwrap(),
                0,
                "an empty backpack comes back as 0"
            );
            assert_eq!(rows[3].4.to_string(), "{'seen': 5}");
        });
    }
}
