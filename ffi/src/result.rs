//! `consenso_result`: the fixed result codes, what each core error maps
//! to, and their messages; and the calling thread's last error in full
//! (`consenso_last_error_message`).

use consenso::balance::BalanceError;
use consenso::hashing::HashError;
use consenso::runtime::{ReceiveError, StartError};
use consenso::{ConfigError, ProposeError};
use std::cell::RefCell;
use std::ffi::c_char;

/// What a call did. The numbers are fixed and never reused; new codes get
/// new numbers. Codes 1xx are about balancers and hash rings, 2xx about
/// consensus nodes.
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
    /// This node is not the leader (the leader it knows of, if any, is
    /// reported where the function says); nothing was proposed.
    NotLeader = 200,
    /// The wait ran out; a proposal may still commit.
    Timeout = 201,
    /// The node is shut down (or stopped on a failure).
    Closed = 202,
    /// The node is overloaded (too many uncommitted commands, or its input
    /// queue is full); nothing was done; retry later.
    Busy = 203,
    /// The bytes are not a message of this cluster and protocol; they were
    /// dropped and counted.
    MalformedMessage = 204,
    /// A blocking call, `shutdown` or `free` from inside one of the node's
    /// own callbacks, where it would wait on itself; nothing was done.
    WouldBlock = 205,
    /// The command is larger than any node takes; nothing was proposed.
    TooLarge = 206,
    /// A leader change dropped the proposal; it did not commit.
    Dropped = 207,
    /// The data directory could not be used, or what it holds is damaged.
    Storage = 208,
    /// The state machine refused the snapshot the data directory holds.
    Restore = 209,
    /// The operating system refused a thread, a socket or a file.
    System = 210,
}

impl consenso_result {
    /// Every code, for lookups by number.
    const ALL: [consenso_result; 23] = [
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
        Self::NotLeader,
        Self::Timeout,
        Self::Closed,
        Self::Busy,
        Self::MalformedMessage,
        Self::WouldBlock,
        Self::TooLarge,
        Self::Dropped,
        Self::Storage,
        Self::Restore,
        Self::System,
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
            Self::NotLeader => "this node is not the leader",
            Self::Timeout => "timed out (a proposal may still commit)",
            Self::Closed => "the node is closed",
            Self::Busy => "the node is overloaded; retry later",
            Self::MalformedMessage => "the bytes are not a message of this cluster",
            Self::WouldBlock => {
                "called from the node's own callback, where it would wait on itself"
            }
            Self::TooLarge => "the command is too large",
            Self::Dropped => "a leader change dropped the proposal; it did not commit",
            Self::Storage => "the data directory could not be used",
            Self::Restore => "the state machine refused the stored snapshot",
            Self::System => "the operating system refused a resource",
        }
    }
}

thread_local! {
    /// The detail of the error the current call is failing with.
    static PENDING: RefCell<Option<String>> = const { RefCell::new(None) };
    /// The message of the calling thread's last failed call.
    static LAST: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Records `detail` as the current call's error message and returns `code`
/// (for `map_err` and `?`).
pub(crate) fn fail(code: consenso_result, detail: impl std::fmt::Display) -> consenso_result {
    PENDING.with(|p| *p.borrow_mut() = Some(detail.to_string()));
    code
}

/// Forgets any detail left from an earlier call (a call starts).
pub(crate) fn begin_call() {
    PENDING.with(|p| p.borrow_mut().take());
}

/// The call is failing with `code`: its detail, or the code's own message,
/// becomes the thread's last error.
pub(crate) fn record(code: consenso_result) {
    let detail = PENDING
        .with(|p| p.borrow_mut().take())
        .unwrap_or_else(|| code.message().to_owned());
    LAST.with(|l| *l.borrow_mut() = detail);
}

impl From<ConfigError> for consenso_result {
    fn from(e: ConfigError) -> Self {
        fail(Self::InvalidArgument, e)
    }
}

impl From<StartError> for consenso_result {
    fn from(e: StartError) -> Self {
        let code = match &e {
            StartError::Config(_) => Self::InvalidArgument,
            StartError::Storage(_) => Self::Storage,
            StartError::Spawn(_) => Self::System,
            StartError::Restore(_) => Self::Restore,
        };
        fail(code, e)
    }
}

impl From<ProposeError> for consenso_result {
    fn from(e: ProposeError) -> Self {
        fail(propose_code(&e), e)
    }
}

/// The code of a proposal's or read's failure (no detail recorded: a
/// completion callback gets it on a node thread).
pub(crate) fn propose_code(e: &ProposeError) -> consenso_result {
    match e {
        ProposeError::NotLeader { .. } => consenso_result::NotLeader,
        ProposeError::Busy => consenso_result::Busy,
        ProposeError::Dropped => consenso_result::Dropped,
        ProposeError::Timeout => consenso_result::Timeout,
        ProposeError::Closed => consenso_result::Closed,
        ProposeError::WouldBlock => consenso_result::WouldBlock,
        ProposeError::TooLarge { .. } => consenso_result::TooLarge,
    }
}

impl From<ReceiveError> for consenso_result {
    fn from(e: ReceiveError) -> Self {
        let code = match &e {
            ReceiveError::Wire(_) => Self::MalformedMessage,
            ReceiveError::Overloaded => Self::Busy,
            ReceiveError::Closed => Self::Closed,
        };
        fail(code, e)
    }
}

impl From<HashError> for consenso_result {
    fn from(e: HashError) -> Self {
        let detail = e.to_string();
        let code = match e {
            HashError::Empty => Self::NoEndpoints,
            HashError::ZeroWeight(_) => Self::InvalidWeight,
            HashError::Duplicate(_) => Self::DuplicateEndpoint,
            HashError::WeightsUnsupported(..) => Self::WeightsUnsupported,
            HashError::Invalid { .. } => Self::InvalidArgument,
        };
        fail(code, detail)
    }
}

impl From<BalanceError> for consenso_result {
    fn from(e: BalanceError) -> Self {
        let detail = e.to_string();
        let code = match e {
            BalanceError::Empty => Self::NoEndpoints,
            BalanceError::Unknown(_) => Self::UnknownEndpoint,
            BalanceError::Duplicate(_) => Self::DuplicateEndpoint,
            BalanceError::ZeroWeight(_) => Self::InvalidWeight,
            BalanceError::KeyRequired => Self::KeyRequired,
            BalanceError::Invalid { .. } => Self::InvalidArgument,
            BalanceError::Hash(h) => h.into(),
        };
        fail(code, detail)
    }
}

/// Writes the message of `code` into `buf` (`len` bytes) as a
/// NUL-terminated string and its length without the NUL into `*written`.
/// An unknown code gets a message saying so.
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT` for a NULL `written`;
/// `CONSENSO_RESULT_BUFFER_TOO_SMALL` when `buf` is NULL or the message
/// and its NUL do not fit (`*written` is set to the message's length;
/// 128 bytes always do).
#[must_use]
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
        // SAFETY: `written` is NULL or a writable size_t.
        let written = unsafe { crate::args::out_ptr(written) }?;
        // SAFETY: `buf` is NULL or points to `len` writable bytes.
        match unsafe { crate::args::out_buffer(buf, len) } {
            Ok(out) if text.len() < len => crate::args::write_c_string(text, out, written),
            _ => {
                written.set(text.len());
                Err(consenso_result::BufferTooSmall)
            }
        }
    })
}

/// Writes the message of the calling thread's last failed call (the core's
/// own words, e.g. "weights add up to 4294967296, above ..."; an empty
/// string when none failed) into `buf` as a NUL-terminated string, and its
/// length without the NUL into `*needed`. Calls that succeed leave it
/// as it is; this function never changes it.
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT` for a NULL `needed`;
/// `CONSENSO_RESULT_BUFFER_TOO_SMALL` when `buf` is NULL or its `len`
/// bytes cannot hold the message and its NUL (`*needed` is set: allocate
/// `*needed + 1` bytes and call again).
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_last_error_message(
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> consenso_result {
    // Not through `guard`: reading the last error must not replace it.
    let read = std::panic::catch_unwind(|| {
        LAST.with(|last| {
            let last = last.borrow();
            // SAFETY: `needed` is NULL or points to a writable size_t, as
            // the caller promises.
            let needed = unsafe { crate::args::out_ptr(needed) }?;
            // SAFETY: `buf` is NULL or points to `len` writable bytes.
            match unsafe { crate::args::out_buffer(buf, len) } {
                Ok(out) if last.len() < len => crate::args::write_c_string(&last, out, needed),
                _ => {
                    needed.set(last.len());
                    Err(consenso_result::BufferTooSmall)
                }
            }
        })
    });
    match read {
        Ok(Ok(())) => consenso_result::Ok,
        Ok(Err(code)) => code,
        Err(_) => consenso_result::Panic,
    }
}
