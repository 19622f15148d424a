//! Every conversion of a C argument in one place: handles, strings, byte
//! spans and out-parameters. Each function checks for NULL and returns
//! `CONSENSO_RESULT_NULL_ARGUMENT` rather than dereferencing it.

use crate::result::consenso_result;
use std::ffi::{c_char, CStr};
use std::ptr::NonNull;

type Res<T> = Result<T, consenso_result>;

/// Shared access to a handle.
///
/// # Safety
/// A non-NULL `ptr` must come from this library's `_new` for type `T` and
/// not be freed yet.
pub(crate) unsafe fn handle<'a, T>(ptr: *const T) -> Res<&'a T> {
    // SAFETY: the caller promises a live handle when non-NULL.
    unsafe { ptr.as_ref() }.ok_or(consenso_result::NullArgument)
}

/// Moves `value` to the heap and gives C the pointer.
pub(crate) fn into_handle<T>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Takes back ownership of a handle; NULL gives `None`.
///
/// # Safety
/// A non-NULL `ptr` must come from [`into_handle`] for type `T` and not be
/// freed yet; C must not use it afterwards.
pub(crate) unsafe fn take_handle<T>(ptr: *mut T) -> Option<Box<T>> {
    // SAFETY: the caller promises `ptr` came from Box::into_raw and is live.
    NonNull::new(ptr).map(|p| unsafe { Box::from_raw(p.as_ptr()) })
}

/// A NUL-terminated UTF-8 string argument.
///
/// # Safety
/// A non-NULL `ptr` must point to a NUL-terminated string that lives for
/// the call.
pub(crate) unsafe fn c_str<'a>(ptr: *const c_char) -> Res<&'a str> {
    if ptr.is_null() {
        return Err(consenso_result::NullArgument);
    }
    // SAFETY: non-NULL and NUL-terminated, as the caller promises.
    let s = unsafe { CStr::from_ptr(ptr) };
    s.to_str().map_err(|_| consenso_result::InvalidUtf8)
}

/// An optional byte span: `(NULL, 0)` is `None`; NULL with a length is an
/// error; otherwise the `len` bytes at `ptr`.
///
/// # Safety
/// A non-NULL `ptr` must point to `len` readable bytes that live for the call.
pub(crate) unsafe fn opt_bytes<'a>(ptr: *const u8, len: usize) -> Res<Option<&'a [u8]>> {
    match (ptr.is_null(), len) {
        (true, 0) => Ok(None),
        (true, _) => Err(consenso_result::NullArgument),
        // SAFETY: `len` readable bytes at `ptr`, as the caller promises.
        (false, _) => Ok(Some(unsafe { std::slice::from_raw_parts(ptr, len) })),
    }
}

/// A byte span that must be given: NULL is allowed only with `len == 0`.
///
/// # Safety
/// As [`opt_bytes`].
pub(crate) unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> Res<&'a [u8]> {
    // SAFETY: forwarded contract.
    Ok(unsafe { opt_bytes(ptr, len) }?.unwrap_or(&[]))
}

/// A C array of `len` elements; NULL is allowed only with `len == 0`.
///
/// # Safety
/// A non-NULL `ptr` must point to `len` initialized elements.
pub(crate) unsafe fn array<'a, T>(ptr: *const T, len: usize) -> Res<&'a [T]> {
    match (ptr.is_null(), len) {
        (true, 0) => Ok(&[]),
        (true, _) => Err(consenso_result::NullArgument),
        // SAFETY: `len` initialized elements at `ptr`, as the caller promises.
        (false, _) => Ok(unsafe { std::slice::from_raw_parts(ptr, len) }),
    }
}

/// An optional C array of `len` elements: NULL is `None`, whatever `len`.
///
/// # Safety
/// A non-NULL `ptr` must point to `len` initialized elements.
pub(crate) unsafe fn opt_array<'a, T>(ptr: *const T, len: usize) -> Option<&'a [T]> {
    // SAFETY: forwarded contract; NULL was handled.
    (!ptr.is_null()).then(|| unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Writes `values` into the C array at `ptr`, unless `ptr` is NULL (the
/// caller did not want them).
///
/// # Safety
/// A non-NULL `ptr` must point to room for `values.len()` elements.
pub(crate) unsafe fn write_array<T: Copy>(ptr: *mut T, values: &[T]) {
    if ptr.is_null() {
        return;
    }
    for (i, &v) in values.iter().enumerate() {
        // SAFETY: room for `values.len()` elements, as the caller promises.
        unsafe { ptr.add(i).write(v) };
    }
}

/// An out-parameter, checked for NULL up front and written only at the end
/// of a successful call.
pub(crate) struct Out<T>(NonNull<T>);

impl<T> Out<T> {
    /// Writes `value` (the old contents, possibly uninitialized, are not
    /// read or dropped).
    pub(crate) fn set(self, value: T) {
        // SAFETY: the pointer was non-NULL, and the caller of `out_ptr`
        // promised it points to writable, aligned memory for a `T`.
        unsafe { self.0.as_ptr().write(value) }
    }
}

/// Checks an out-parameter.
///
/// # Safety
/// A non-NULL `ptr` must point to writable, aligned memory for a `T`.
pub(crate) unsafe fn out_ptr<T>(ptr: *mut T) -> Res<Out<T>> {
    NonNull::new(ptr)
        .map(Out)
        .ok_or(consenso_result::NullArgument)
}

/// An output buffer of `len` bytes.
pub(crate) struct OutBuf {
    ptr: NonNull<u8>,
    len: usize,
}

/// Checks an output buffer.
///
/// # Safety
/// A non-NULL `ptr` must point to `len` writable bytes.
pub(crate) unsafe fn out_buffer(ptr: *mut c_char, len: usize) -> Res<OutBuf> {
    NonNull::new(ptr.cast::<u8>())
        .map(|ptr| OutBuf { ptr, len })
        .ok_or(consenso_result::NullArgument)
}

/// Writes `text` and a NUL into `out`, and the text's length into
/// `written`; nothing when it does not fit.
pub(crate) fn write_c_string(text: &str, out: OutBuf, written: Out<usize>) -> Res<()> {
    let n = text.len();
    if n + 1 > out.len {
        return Err(consenso_result::BufferTooSmall);
    }
    // SAFETY: `out` has `out.len >= n + 1` writable bytes (its constructor's
    // contract), and a Rust string never overlaps C's buffer.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), out.ptr.as_ptr(), n);
        out.ptr.as_ptr().add(n).write(0);
    }
    written.set(n);
    Ok(())
}

/// Reads a versioned struct the caller filled: one starting with its
/// `u32` `struct_size`. Sizes below this version's (the first published)
/// are refused, so no field is ever read in part; a larger size (a caller
/// built against a later header) is read up to this version's fields.
///
/// # Safety
/// A non-NULL `ptr` must point to `struct_size` readable bytes, the first
/// four of which are `struct_size`; `T` must be plain old data.
pub(crate) unsafe fn read_versioned<T: Copy>(ptr: *const T) -> Res<T> {
    if ptr.is_null() {
        return Err(consenso_result::NullArgument);
    }
    // SAFETY: a versioned struct starts with its u32 size.
    let size = unsafe { ptr.cast::<u32>().read_unaligned() } as usize;
    check_size(size, std::mem::size_of::<T>())?;
    // SAFETY: at least size_of::<T>() readable bytes, checked above.
    Ok(unsafe { ptr.read_unaligned() })
}

/// Writes `value` into the caller's versioned struct at `ptr` (its
/// `struct_size`, set by the caller, says how much room there is; sizes
/// below this version's are refused). Only this version's bytes are
/// written, `struct_size` included, so the caller learns how many.
///
/// # Safety
/// A non-NULL `ptr` must point to `struct_size` writable bytes, the first
/// four of which are `struct_size`; `T` must be plain old data whose first
/// field is its `u32` size, already set in `value`.
pub(crate) unsafe fn write_versioned<T: Copy>(ptr: *mut T, value: T) -> Res<()> {
    if ptr.is_null() {
        return Err(consenso_result::NullArgument);
    }
    // SAFETY: a versioned struct starts with its u32 size.
    let size = unsafe { ptr.cast::<u32>().read_unaligned() } as usize;
    check_size(size, std::mem::size_of::<T>())?;
    // SAFETY: room for at least size_of::<T>() bytes, checked above.
    unsafe { ptr.write_unaligned(value) };
    Ok(())
}

/// Writes `values` into a caller's array of entries `entry_size` bytes
/// apart (at least this version's size: a caller built against a later
/// header leaves room for fields this version does not fill).
///
/// # Safety
/// A non-NULL `ptr` must point to room for `values.len()` entries of
/// `entry_size` bytes; `T` must be plain old data.
pub(crate) unsafe fn write_entries<T: Copy>(
    ptr: *mut T,
    entry_size: usize,
    values: &[T],
) -> Res<()> {
    check_size(entry_size, std::mem::size_of::<T>())?;
    for (i, v) in values.iter().enumerate() {
        // SAFETY: entry `i` lies within the caller's room, as promised;
        // the caller's entries need not be aligned for T.
        unsafe {
            ptr.cast::<u8>()
                .add(i * entry_size)
                .cast::<T>()
                .write_unaligned(*v)
        };
    }
    Ok(())
}

/// Refuses a struct size below this version's `ours`.
fn check_size(size: usize, ours: usize) -> Res<()> {
    if size < ours {
        return Err(crate::result::fail(
            consenso_result::InvalidArgument,
            format!("struct_size {size} is below {ours}, the size of this struct in every version: set it to sizeof the struct"),
        ));
    }
    Ok(())
}

/// A NUL-terminated path argument: any bytes on Unix (where paths are
/// bytes), UTF-8 elsewhere.
///
/// # Safety
/// A non-NULL `ptr` must point to a NUL-terminated string that lives for
/// the call.
pub(crate) unsafe fn c_path(ptr: *const c_char) -> Res<std::path::PathBuf> {
    if ptr.is_null() {
        return Err(consenso_result::NullArgument);
    }
    // SAFETY: non-NULL and NUL-terminated, as the caller promises.
    let s = unsafe { CStr::from_ptr(ptr) };
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(std::ffi::OsStr::from_bytes(s.to_bytes()).into())
    }
    #[cfg(not(unix))]
    {
        s.to_str()
            .map(std::path::PathBuf::from)
            .map_err(|_| consenso_result::InvalidUtf8)
    }
}
