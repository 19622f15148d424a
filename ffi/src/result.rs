//! `consenso_result`: the fixed result codes, what each core error maps
//! to, and their messages.

use consenso::balance::BalanceError;
use consenso::hashing::HashError;
use std::ffi::c_char;

/// What a call did. The numbers are fixed and never reused; new codes get
/// new numbers. Codes 1xx are about balancers and hash rings.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum consenso_result {
    /// Success; out-parameters were written.
    Ok = 0,
    /// The library panicked; the handle may be unusable.
    Panic = 1,
    /// A required pointer argument was NULL.
    NullArgument = 2,
    /// An argument or setting is out of range (an unknown enum value, a
    /// share outside 0..1, a bounded-load factor not above 1, ...).
    InvalidArgument = 3,
    /// A string argument is not valid UTF-8.
    InvalidUtf8 = 4,
    /// The output buffer is too small; nothing was written.
    BufferTooSmall = 5,
    /// There is no endpoint to pick, or a hash ring was given none.
    NoEndpoints = 100,
    /// No endpoint has that name or id.
    UnknownEndpoint = 101,
    /// An endpoint with that name exists already.
    DuplicateEndpoint = 102,
    /// A weight is zero (weights must be at least 1).
    InvalidWeight = 103,
    /// The consistent_hash policy needs a key to pick.
    KeyRequired = 104,
    /// Jump hashing cannot weight endpoints.
    WeightsUnsupported = 105,
}

impl consenso_result {
    /// Every code, for lookups by number.
    const ALL: [consenso_result; 12] = [
        Self::Ok,
        Self::Panic,
        Self::NullArgument,
        Self::InvalidArgument,
        Self::InvalidUtf8,
        Self::BufferTooSmall,
        Self::NoEndpoints,
        Self::UnknownEndpoint,
        Self::DuplicateEndpoint,
        Self::InvalidWeight,
        Self::KeyRequired,
        Self::WeightsUnsupported,
    ];

    /// The code numbered `code`, if there is one.
    pub(crate) fn from_code(code: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|c| *c as u32 == code)
    }

    /// One line saying what the code means.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Self::Ok => "success",
            Self::Panic => "internal error: the library panicked",
            Self::NullArgument => "a required pointer argument was NULL",
            Self::InvalidArgument => "an argument or setting is out of range",
            Self::InvalidUtf8 => "a string argument is not valid UTF-8",
            Self::BufferTooSmall => "the output buffer is too small",
            Self::NoEndpoints => "there are no endpoints",
            Self::UnknownEndpoint => "no endpoint has that name or id",
            Self::DuplicateEndpoint => "an endpoint with that name already exists",
            Self::InvalidWeight => "weights must be at least 1",
            Self::KeyRequired => "the consistent_hash policy needs a key",
            Self::WeightsUnsupported => "jump hashing cannot weight endpoints",
        }
    }
}

impl From<HashError> for consenso_result {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Empty => Self::NoEndpoints,
            HashError::ZeroWeight(_) => Self::InvalidWeight,
            HashError::Duplicate(_) => Self::DuplicateEndpoint,
            HashError::WeightsUnsupported(..) => Self::WeightsUnsupported,
            HashError::Invalid { .. } => Self::InvalidArgument,
        }
    }
}

impl From<BalanceError> for consenso_result {
    fn from(e: BalanceError) -> Self {
        match e {
            BalanceError::Empty => Self::NoEndpoints,
            BalanceError::Unknown(_) => Self::UnknownEndpoint,
            BalanceError::Duplicate(_) => Self::DuplicateEndpoint,
            BalanceError::ZeroWeight(_) => Self::InvalidWeight,
            BalanceError::KeyRequired => Self::KeyRequired,
            BalanceError::Invalid { .. } => Self::InvalidArgument,
            BalanceError::Hash(h) => h.into(),
        }
    }
}

/// Writes the message of `code` into `buf` (`len` bytes) as a
/// NUL-terminated string and its length without the NUL into `*written`.
/// An unknown code gets a message saying so.
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT` for a NULL `buf` or `written`,
/// `CONSENSO_RESULT_BUFFER_TOO_SMALL` when the message and its NUL do not
/// fit (128 bytes always do).
#[no_mangle]
pub extern "C" fn consenso_result_message(
    code: u32,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> consenso_result {
    crate::panic::guard(|| {
        let unknown;
        let text = match consenso_result::from_code(code) {
            Some(c) => c.message(),
            None => {
                unknown = format!("unknown result code {code}");
                &unknown
            }
        };
        // SAFETY: `buf` points to `len` writable bytes and `written` to a
        // writable size_t, or they are NULL, as the caller promises.
        let (out, written) = unsafe {
            (
                crate::args::out_buffer(buf, len)?,
                crate::args::out_ptr(written)?,
            )
        };
        crate::args::write_c_string(text, out, written)
    })
}
