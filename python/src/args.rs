//! Conversions of Python arguments that both classes take: keys, weights,
//! durations and names of nodes.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyInt, PyMemoryView, PyString};
use std::borrow::Cow;

/// The name of `obj`'s type, for error messages.
pub(crate) fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// A hashing key: `bytes`, `bytearray`, `memoryview`, or `str` (hashed as
/// its UTF-8 bytes).
pub(crate) fn key<'a>(obj: &'a Bound<'_, PyAny>) -> PyResult<Cow<'a, [u8]>> {
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Cow::Owned(s.to_cow()?.into_owned().into_bytes()));
    }
    bytes_like(obj, "a key").map_err(|_| {
        PyTypeError::new_err(format!(
            "a key must be bytes, bytearray, memoryview or str, not {}",
            type_name(obj)
        ))
    })
}

/// An optional key.
pub(crate) fn opt_key<'a>(obj: Option<&'a Bound<'_, PyAny>>) -> PyResult<Option<Cow<'a, [u8]>>> {
    obj.filter(|o| !o.is_none()).map(key).transpose()
}

/// A weight: an `int` from 1 to 2^32 - 1.
pub(crate) fn weight(obj: &Bound<'_, PyAny>) -> PyResult<u32> {
    // bool is an int subclass in Python; True as a weight is a mistake.
    if !obj.is_instance_of::<PyInt>() || obj.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "a weight must be an int, not {}",
            type_name(obj)
        )));
    }
    obj.extract::<u32>()
        .ok()
        .filter(|&w| w >= 1)
        .ok_or_else(|| {
            PyValueError::new_err(format!("a weight must be from 1 to 2**32-1, got {obj}"))
        })
}

/// One weight per node: `weights` (any iterable of ints >= 1), or all 1.
pub(crate) fn weights(weights: Option<&Bound<'_, PyAny>>, nodes: usize) -> PyResult<Vec<u32>> {
    let weights: Vec<u32> = match weights {
        Some(w) => w
            .try_iter()?
            .map(|w| weight(&w?))
            .collect::<PyResult<_>>()?,
        None => vec![1; nodes],
    };
    if weights.len() != nodes {
        return Err(PyValueError::new_err(format!(
            "{} weights for {nodes} nodes",
            weights.len()
        )));
    }
    Ok(weights)
}

/// The name a node is known by when it is added: a `str` node is its own
/// name; a node with a `name` attribute is known by it (a `str`, else a
/// `TypeError`); otherwise `str(node)`, when its type defines `__str__` or
/// `__repr__` (an `int` is "5"). An object with neither would be named by
/// its memory address, which changes from run to run: a `TypeError`.
/// Consistent hashing places nodes by name, so a name should be stable
/// across processes.
pub(crate) fn node_name(node: &Bound<'_, PyAny>) -> PyResult<String> {
    let py = node.py();
    if let Ok(s) = node.cast::<PyString>() {
        return Ok(s.to_cow()?.into_owned());
    }
    if node.is_none() {
        return Err(PyTypeError::new_err("a node cannot be None"));
    }
    // str(b"k") is "b'k'": surely not the name meant.
    if node.is_instance_of::<PyBytes>()
        || node.is_instance_of::<PyByteArray>()
        || node.is_instance_of::<PyMemoryView>()
    {
        return Err(PyTypeError::new_err(format!(
            "a node cannot be {}: name it by a str (decode the bytes)",
            type_name(node)
        )));
    }
    match node.getattr(intern!(py, "name")) {
        Ok(name) => {
            return match name.cast::<PyString>() {
                Ok(s) => Ok(s.to_cow()?.into_owned()),
                Err(_) => Err(PyTypeError::new_err(format!(
                    "a node's name attribute must be a str, not {}",
                    type_name(&name)
                ))),
            };
        }
        Err(e) if e.is_instance_of::<pyo3::exceptions::PyAttributeError>(py) => {}
        Err(e) => return Err(e),
    }
    let object = py.get_type::<pyo3::types::PyAny>();
    let ty = node.get_type();
    let own = |method: &Bound<'_, pyo3::types::PyString>| -> PyResult<bool> {
        Ok(!ty.getattr(method)?.is(&object.getattr(method)?))
    };
    if !own(intern!(py, "__str__"))? && !own(intern!(py, "__repr__"))? {
        return Err(PyTypeError::new_err(format!(
            "a node needs a stable name: a str, a str name attribute, or a __str__ \
             of its own ({} has none)",
            type_name(node)
        )));
    }
    Ok(node.str()?.to_cow()?.into_owned())
}

/// A `str` argument called `what`.
pub(crate) fn string(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<String> {
    match obj.cast::<PyString>() {
        Ok(s) => Ok(s.to_cow()?.into_owned()),
        Err(_) => Err(PyTypeError::new_err(format!(
            "{what} must be a str, not {}",
            type_name(obj)
        ))),
    }
}

/// A list of `str` called `what`, from any iterable but a single `str`.
pub(crate) fn strings(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<String>> {
    if obj.is_instance_of::<PyString>() || obj.is_instance_of::<PyBytes>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be an iterable of str, not a single {}",
            type_name(obj)
        )));
    }
    let items = obj.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what} must be an iterable of str, not {}",
            type_name(obj)
        ))
    })?;
    items
        .map(|item| string(&item?, &format!("each of {what}")))
        .collect()
}

/// Bytes from a `bytes`, `bytearray` or `memoryview` argument called `what`.
pub(crate) fn bytes_like<'a>(obj: &'a Bound<'_, PyAny>, what: &str) -> PyResult<Cow<'a, [u8]>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Cow::Borrowed(b.as_bytes()));
    }
    if let Ok(b) = obj.cast::<pyo3::types::PyByteArray>() {
        return Ok(Cow::Owned(b.to_vec()));
    }
    if obj.is_instance_of::<pyo3::types::PyMemoryView>() {
        let copy = obj.call_method0(intern!(obj.py(), "tobytes"))?;
        return Ok(Cow::Owned(copy.cast::<PyBytes>()?.as_bytes().to_vec()));
    }
    Err(PyTypeError::new_err(format!(
        "{what} must be bytes, bytearray or memoryview, not {}",
        type_name(obj)
    )))
}

/// An `int` from 0 to 2**64-1 called `what`.
pub(crate) fn uint64(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<u64> {
    if !obj.is_instance_of::<PyInt>() || obj.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be an int, not {}",
            type_name(obj)
        )));
    }
    obj.extract::<u64>()
        .map_err(|_| PyValueError::new_err(format!("{what} must be from 0 to 2**64-1, got {obj}")))
}

/// A number of seconds called `what`, as a float (an `int` or `float`; not a
/// `bool`). The core checks its range.
pub(crate) fn seconds(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<f64> {
    let number = (obj.is_instance_of::<PyInt>() || obj.is_instance_of::<pyo3::types::PyFloat>())
        && !obj.is_instance_of::<PyBool>();
    if !number {
        return Err(PyTypeError::new_err(format!(
            "{what} must be a number of seconds, not {}",
            type_name(obj)
        )));
    }
    obj.extract::<f64>().map_err(|_| {
        PyValueError::new_err(format!("{what} is too large a number of seconds: {obj}"))
    })
}

/// A callable called `what`, or `None` when `obj` is `None` or absent.
pub(crate) fn callback(obj: Option<Bound<'_, PyAny>>, what: &str) -> PyResult<Option<Py<PyAny>>> {
    match obj {
        None => Ok(None),
        Some(o) if o.is_none() => Ok(None),
        Some(o) if o.is_callable() => Ok(Some(o.unbind())),
        Some(o) => Err(PyTypeError::new_err(format!(
            "{what} must be callable, not {}",
            type_name(&o)
        ))),
    }
}
