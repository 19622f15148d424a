//! `consenso_node_*`: a consensus node (Raft, Multi-Paxos or ZAB) whose
//! network and state machine are the host's, wrapping the core's
//! `AnyNode`.
//!
//! The host fills a `consenso_node_config` (from
//! `consenso_node_config_default`) and a `consenso_node_callbacks`, both
//! starting with their `struct_size` so later versions can add fields: the
//! library reads only the bytes the caller's version has, and fields it
//! does not see keep their defaults.
//!
//! Threads: callbacks run on the node's own threads (`send` on its send
//! thread, `on_state_change` on its driver thread, `apply`, `snapshot` and
//! `restore` on its apply thread, completions on the driver or apply
//! thread), one at a time per kind, never while the caller of a node
//! function waits on a lock of the node. A `send` that blocks holds up
//! messages only: the driver queues them and keeps its timers. From inside a callback, the
//! non-blocking functions work (`receive`, `propose_async`,
//! `read_barrier_async`, `get_status`); the blocking ones (`propose`,
//! `read_barrier`) and `shutdown`/`free` return
//! `CONSENSO_RESULT_WOULD_BLOCK` and do nothing.

use crate::args::{self, into_handle, out_ptr};
use crate::panic::{guard, guard_void};
use crate::result::{consenso_result, fail, propose_code};
use consenso::consensus::{ProtocolKind, RoleChange};
use consenso::runtime::{
    AnyNode, AnyNodeConfig, SnapshotPolicy, StateMachine, Timeouts, Transport,
};
use consenso::{Index, NodeId, ProposeError, Role};
use std::ffi::{c_char, c_void};
use std::sync::Arc;
use std::time::Duration;

/// Passed as a timeout: wait as long as it takes.
pub const CONSENSO_WAIT_FOREVER: u64 = u64::MAX;

/// A consensus protocol (`consenso_node_config.protocol`).
#[repr(u32)]
#[derive(Clone, Copy, Debug)]
#[allow(non_camel_case_types, dead_code)]
pub enum consenso_protocol {
    /// Raft, with PreVote and CheckQuorum.
    Raft = 1,
    /// Multi-Paxos with a stable leader.
    Paxos = 2,
    /// ZooKeeper Atomic Broadcast (Fast Leader Election).
    Zab = 3,
}

/// A node's role (`on_state_change`, `consenso_node_get_status`), in the
/// protocol-neutral terms of the core: Paxos's acceptor and ZAB's
/// FOLLOWING are followers, a Paxos proposer in phase 1 and ZAB's LOOKING
/// are candidates.
#[repr(u32)]
#[derive(Clone, Copy, Debug)]
#[allow(non_camel_case_types)]
pub enum consenso_role {
    /// Follows a leader, or waits for one.
    Follower = 0,
    /// Raft's PreVote: asks whether it could win before campaigning.
    PreCandidate = 1,
    /// Campaigns for leadership.
    Candidate = 2,
    /// Leads.
    Leader = 3,
}

impl From<Role> for consenso_role {
    fn from(r: Role) -> Self {
        match r {
            Role::Follower => Self::Follower,
            Role::PreCandidate => Self::PreCandidate,
            Role::Candidate => Self::Candidate,
            Role::Leader => Self::Leader,
        }
    }
}

/// A node's settings. Get defaults from `consenso_node_config_default`,
/// then set `id` and `peers`. Every duration is in milliseconds. The
/// library checks them with the core's own checks when the node starts.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct consenso_node_config {
    /// `sizeof(consenso_node_config)` as the caller compiled it.
    pub struct_size: u32,
    /// A `consenso_protocol` (default Raft).
    pub protocol: u32,
    /// This node's id (non-zero, one of `peers`).
    pub id: u64,
    /// Every voter's id, this node's included, in any order (the same set
    /// on every node). Read during `consenso_node_start` only.
    pub peers: *const u64,
    /// Number of ids at `peers`.
    pub peers_len: usize,
    /// Messages from another cluster id are refused (default 0).
    pub cluster_id: u64,
    /// Shortest election timeout (default 150).
    pub election_timeout_min_ms: u64,
    /// Longest election timeout (default 300).
    pub election_timeout_max_ms: u64,
    /// Leader heartbeat interval (default 50; at least 1, below the
    /// election timeout).
    pub heartbeat_ms: u64,
    /// A proposal or read not answered after this long fails with
    /// `CONSENSO_RESULT_TIMEOUT` (default 10,000; `CONSENSO_WAIT_FOREVER`:
    /// never).
    pub proposal_timeout_ms: u64,
    /// Most command bytes a leader puts in one message (default 1 MiB; one
    /// command always goes): lower it for a transport with a size limit.
    pub max_bytes_per_message: u64,
    /// A NUL-terminated path of the node's data directory (created if
    /// missing), or NULL to keep everything in memory. Read during
    /// `consenso_node_start` only.
    pub data_dir: *const c_char,
    /// With a `snapshot` callback: snapshot the state machine after this
    /// many entries applied since the last snapshot (default 100,000; 0:
    /// not by count). The log it covers is then dropped, and a restart
    /// restores it and replays only what follows.
    pub snapshot_entries: u64,
    /// ... or after this many entry bytes (default 64 MiB; 0: not by
    /// size; both 0: never).
    pub snapshot_bytes: u64,
}

/// What a node calls. `send` is required; the others may be NULL.
/// `user_data` is passed to each; `user_data_free`, if not NULL, is called
/// with it exactly once, after the node's last callback, once a started
/// node is freed. When `consenso_node_start` fails it is not called: the
/// caller still owns `user_data`.
///
/// Threads: `send` runs on the node's send thread, `on_state_change` on
/// its driver thread, `apply` (and `snapshot`, `restore`) on its apply
/// thread, so they may run at the same time with the same `user_data`
/// (guard what they share). Completions of
/// `_async` calls run on either, or on the calling thread when the node
/// refuses at once. Inside any of them, `consenso_node_receive`,
/// `consenso_node_propose_async`, `consenso_node_read_barrier_async` and
/// `consenso_node_get_status` work (on this node or another); the blocking
/// `consenso_node_propose` and `consenso_node_read_barrier`, and
/// `consenso_node_shutdown` and `consenso_node_free` of the node whose
/// callback it is, return `CONSENSO_RESULT_WOULD_BLOCK` and do nothing.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct consenso_node_callbacks {
    /// `sizeof(consenso_node_callbacks)` as the caller compiled it.
    pub struct_size: u32,
    /// Passed to every callback.
    pub user_data: *mut c_void,
    /// Frees `user_data`; called once, from the thread that frees the node.
    pub user_data_free: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
    /// Sends `len` bytes to node `to`, from the node's send thread (one per
    /// node, in the order the node sent them). The bytes are valid during
    /// the call only. May block: the node's timers keep running, and what
    /// it sends meanwhile waits in a queue (65,536 messages; more are
    /// dropped), so a `send` blocked for a second delays that second's
    /// messages, not the node. May drop the message (the protocols retry).
    pub send:
        Option<unsafe extern "C" fn(user_data: *mut c_void, to: u64, bytes: *const u8, len: usize)>,
    /// Applies the committed command at `index` (`len` bytes, valid during
    /// the call) to the host's state machine, on the node's apply thread,
    /// in log order, once per command. What it writes through `response`
    /// (`consenso_response_write`) is what the proposal returns on the node
    /// that proposed it. Returns 0; any other value is a failed state
    /// machine: the node stops (its status says `state_machine_failed`),
    /// since applying further commands to a machine that failed half way
    /// is not safe. NULL: commands are only ordered (empty responses).
    pub apply: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            index: u64,
            command: *const u8,
            len: usize,
            response: *mut consenso_response,
        ) -> i32,
    >,
    /// Called on the driver thread when the role, term or leader changes
    /// (`leader` 0: none known).
    pub on_state_change: Option<
        unsafe extern "C" fn(user_data: *mut c_void, role: consenso_role, term: u64, leader: u64),
    >,
    /// Writes the state machine's whole state, as of the last command
    /// applied, through `out` (`consenso_response_write`), on the apply
    /// thread, when the config's snapshot policy says one is due. Returns
    /// 0; non-zero: no snapshot now (asked again a policy's worth later).
    /// NULL: the node never snapshots, keeps its whole log, and a restarted
    /// node applies it again from index 1.
    pub snapshot:
        Option<unsafe extern "C" fn(user_data: *mut c_void, out: *mut consenso_response) -> i32>,
    /// Replaces the state machine's state with a snapshot `snapshot` wrote
    /// after applying the command at `index` (`len` bytes, valid during the
    /// call): on a restart before the node runs (inside
    /// `consenso_node_start`), or on the apply thread when the leader sends
    /// one to a node too far behind. Returns 0; non-zero refuses it: the
    /// start fails with `CONSENSO_RESULT_RESTORE`, or the running node
    /// stops as on a failed `apply`.
    pub restore: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            index: u64,
            bytes: *const u8,
            len: usize,
        ) -> i32,
    >,
}

/// Where `apply` writes its response; valid during that `apply` call only.
pub struct consenso_response {
    bytes: Vec<u8>,
}

/// A running consensus node. Thread-safe: any threads may call its
/// functions at once, except `consenso_node_free`, which no other call on
/// the same handle may overlap or follow (stop delivering to it first).
pub struct consenso_node {
    /// Dropped first: shuts the node down and joins its threads.
    node: AnyNode,
    /// Dropped last, so `user_data_free` runs in `consenso_node_free`,
    /// after every callback.
    _host: Arc<Host>,
}

/// A proposal's or read's completion: `result` is `CONSENSO_RESULT_OK` or
/// why it failed; `response`/`len` are what `apply` wrote (valid during the
/// call; NULL and 0 on failure or for a read); `index` is the read's index
/// (0 for a proposal); `leader` the leader this node knows of on
/// `CONSENSO_RESULT_NOT_LEADER` (0: none known).
pub type consenso_completion = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        result: consenso_result,
        response: *const u8,
        len: usize,
        index: u64,
        leader: u64,
    ),
>;

/// A node's state and counters (`consenso_node_get_status`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct consenso_node_status {
    /// Set by the caller to `sizeof(consenso_node_status)`; the library
    /// writes only that many bytes.
    pub struct_size: u32,
    /// The node's role (a `consenso_role`).
    pub role: u32,
    /// The node's id.
    pub id: u64,
    /// Raft's term, ZAB's epoch, or Paxos's ballot.
    pub term: u64,
    /// The leader it knows of (0: none).
    pub leader: u64,
    /// Whom it backs in this term (0: none).
    pub voted_for: u64,
    /// Highest index known committed.
    pub commit_index: u64,
    /// Highest index applied to the state machine.
    pub applied_index: u64,
    /// Last index in its log.
    pub last_index: u64,
    /// Messages sent.
    pub messages_sent: u64,
    /// Messages received and taken.
    pub messages_received: u64,
    /// Messages refused (malformed, another cluster or protocol).
    pub messages_rejected: u64,
    /// Messages dropped (input queue full).
    pub messages_dropped: u64,
    /// Proposals that failed.
    pub proposals_failed: u64,
    /// Storage errors.
    pub storage_errors: u64,
    /// Syncs of the data directory.
    pub storage_syncs: u64,
    /// Index the latest snapshot covers.
    pub snapshot_index: u64,
    /// Snapshots taken.
    pub snapshots_taken: u64,
    /// Snapshots installed from a leader.
    pub snapshots_installed: u64,
    /// The state machine failed (`apply` returned non-zero); the node stopped.
    pub state_machine_failed: bool,
    /// The storage failed; the node stopped.
    pub storage_failed: bool,
    /// The node is shut down.
    pub closed: bool,
}

/// `user_data` and the C callbacks, shared by the node's threads. Frees
/// `user_data` when the last thread lets go of it.
struct Host {
    callbacks: consenso_node_callbacks,
    /// Set once the node started: only then is `user_data` the node's to
    /// free.
    owned: std::sync::atomic::AtomicBool,
}

// SAFETY: the header tells the host its callbacks and `user_data` are
// used from the node's threads; that is the contract the host accepts.
unsafe impl Send for Host {}
// SAFETY: as above; the library never touches `user_data` itself.
unsafe impl Sync for Host {}

impl Drop for Host {
    fn drop(&mut self) {
        if !*self.owned.get_mut() {
            return;
        }
        if let Some(free) = self.callbacks.user_data_free {
            // SAFETY: the host's function, with its own pointer, once.
            unsafe { free(self.callbacks.user_data) };
        }
    }
}

/// Most messages waiting for the host's `send`; more are dropped (the
/// protocols retry).
const SEND_QUEUE: usize = 65_536;

thread_local! {
    /// True on a send thread: the host's `send` runs there.
    static ON_SEND_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The node's transport: the host's `send`, called on a thread of its own,
/// so a `send` that blocks holds up messages, never the node's timers.
struct HostSend {
    queue: Option<crossbeam_channel::Sender<(NodeId, Vec<u8>)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HostSend {
    fn start(host: Arc<Host>) -> Result<Self, consenso_result> {
        let (tx, rx) = crossbeam_channel::bounded::<(NodeId, Vec<u8>)>(SEND_QUEUE);
        let thread = std::thread::Builder::new()
            .name("consenso-send".into())
            .spawn(move || {
                ON_SEND_THREAD.with(|f| f.set(true));
                let c = &host.callbacks;
                let Some(send) = c.send else { return };
                for (to, bytes) in rx {
                    // SAFETY: the host's function; the bytes live for the call.
                    unsafe { send(c.user_data, to, bytes.as_ptr(), bytes.len()) };
                }
            })
            .map_err(|e| {
                fail(
                    consenso_result::System,
                    format!("could not spawn the send thread: {e}"),
                )
            })?;
        Ok(HostSend {
            queue: Some(tx),
            thread: Some(thread),
        })
    }
}

impl Transport for HostSend {
    fn send(&self, to: NodeId, bytes: Vec<u8>) {
        if let Some(queue) = &self.queue {
            let _ = queue.try_send((to, bytes));
        }
    }
}

impl Drop for HostSend {
    /// Ends the send thread once what is queued is sent, and waits for it:
    /// no `send` runs once the node's threads are joined.
    fn drop(&mut self) {
        self.queue = None;
        if let Some(thread) = self.thread.take() {
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

/// The node's state machine: the host's `apply`.
struct HostMachine(Arc<Host>);

impl StateMachine for HostMachine {
    fn apply(&mut self, index: Index, command: &[u8]) -> Vec<u8> {
        let c = &self.0.callbacks;
        let Some(apply) = c.apply else {
            return Vec::new();
        };
        let mut response = consenso_response { bytes: Vec::new() };
        // SAFETY: the host's function; the command and the response live
        // for the call.
        let status = unsafe {
            apply(
                c.user_data,
                index,
                command.as_ptr(),
                command.len(),
                &mut response,
            )
        };
        if status != 0 {
            // A failed machine stops the node, as a panicking Rust one does.
            std::panic::resume_unwind(Box::new("the apply callback reported a failure"));
        }
        response.bytes
    }

    fn snapshot(&self) -> Option<Vec<u8>> {
        let c = &self.0.callbacks;
        let snapshot = c.snapshot?;
        let mut out = consenso_response { bytes: Vec::new() };
        // SAFETY: the host's function; `out` lives for the call.
        let status = unsafe { snapshot(c.user_data, &mut out) };
        (status == 0).then_some(out.bytes)
    }

    fn restore(&mut self, index: Index, data: &[u8]) -> Result<(), String> {
        let c = &self.0.callbacks;
        let Some(restore) = c.restore else {
            return Err(format!(
                "a snapshot through {index} arrived, and the callbacks have no restore"
            ));
        };
        // SAFETY: the host's function; the bytes live for the call.
        match unsafe { restore(c.user_data, index, data.as_ptr(), data.len()) } {
            0 => Ok(()),
            status => Err(format!(
                "the restore callback refused the snapshot through {index} (it returned {status})"
            )),
        }
    }
}

/// Milliseconds as a duration.
fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

impl consenso_node_config {
    fn defaults() -> Self {
        let core = AnyNodeConfig::default();
        let t = Timeouts::default();
        consenso_node_config {
            struct_size: std::mem::size_of::<Self>() as u32,
            protocol: consenso_protocol::Raft as u32,
            id: 0,
            peers: std::ptr::null(),
            peers_len: 0,
            cluster_id: core.cluster_id,
            election_timeout_min_ms: t.election_min.as_millis() as u64,
            election_timeout_max_ms: t.election_max.as_millis() as u64,
            heartbeat_ms: t.heartbeat.as_millis() as u64,
            proposal_timeout_ms: core.proposal_timeout.as_millis() as u64,
            max_bytes_per_message: core.limits.max_bytes_per_message as u64,
            data_dir: std::ptr::null(),
            snapshot_entries: core.snapshot.entries,
            snapshot_bytes: core.snapshot.bytes,
        }
    }

    /// The core's settings (checked by the core when the node opens).
    fn to_core(self) -> Result<AnyNodeConfig, consenso_result> {
        let protocol = match self.protocol {
            1 => ProtocolKind::Raft,
            2 => ProtocolKind::MultiPaxos,
            3 => ProtocolKind::Zab,
            other => {
                return Err(fail(
                    consenso_result::InvalidArgument,
                    format!("protocol: unknown protocol number {other}"),
                ))
            }
        };
        // SAFETY: `peers` holds `peers_len` ids or is NULL with 0, as the
        // header asks.
        let voters = unsafe { args::array(self.peers, self.peers_len) }?.to_vec();
        let data_dir = if self.data_dir.is_null() {
            None
        } else {
            // SAFETY: a NUL-terminated string, as the header asks.
            Some(unsafe { args::c_path(self.data_dir) }?)
        };
        let mut config = AnyNodeConfig {
            protocol,
            id: self.id,
            voters,
            cluster_id: self.cluster_id,
            timeouts: Timeouts {
                election_min: millis(self.election_timeout_min_ms),
                election_max: millis(self.election_timeout_max_ms),
                heartbeat: millis(self.heartbeat_ms),
            },
            proposal_timeout: millis(self.proposal_timeout_ms),
            data_dir,
            snapshot: SnapshotPolicy {
                entries: self.snapshot_entries,
                bytes: self.snapshot_bytes,
            },
            ..AnyNodeConfig::default()
        };
        config.limits.max_bytes_per_message =
            usize::try_from(self.max_bytes_per_message).unwrap_or(usize::MAX);
        Ok(config)
    }
}

/// Writes the default settings into `*out` (its `struct_size` included):
/// Raft, cluster id 0, elections after 150 to 300 ms, heartbeats every
/// 50 ms, proposals failing after 10 s, 1 MiB per message, in memory,
/// snapshots (with a `snapshot` callback) every 100,000 entries or 64 MiB. Set
/// `id` and `peers` before starting a node.
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT`.
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_node_config_default(out: *mut consenso_node_config) -> consenso_result {
    guard(|| {
        // SAFETY: `out` is NULL or points to a writable config.
        unsafe { out_ptr(out) }?.set(consenso_node_config::defaults());
        Ok(())
    })
}

/// Starts a node with `*config` and `*callbacks` (both read during the
/// call only) and writes its handle into `*out`. The node's threads may
/// call back before this returns. Free it with `consenso_node_free`.
///
/// Errors (nothing started, `user_data_free` not called):
/// `CONSENSO_RESULT_NULL_ARGUMENT` (`config`, `callbacks`, `send`, `out`,
/// or `peers` NULL with a length); `CONSENSO_RESULT_INVALID_ARGUMENT` (no
/// peers, `id` 0 or not among them, a duplicate peer, an election timeout
/// not above the heartbeat, an unknown protocol, a `struct_size` below 4;
/// `consenso_last_error_message` names the setting);
/// `CONSENSO_RESULT_INVALID_UTF8` (`data_dir`); `CONSENSO_RESULT_STORAGE`
/// (the data directory cannot be used or is damaged);
/// `CONSENSO_RESULT_RESTORE`; `CONSENSO_RESULT_SYSTEM` (no thread).
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_node_start(
    config: *const consenso_node_config,
    callbacks: *const consenso_node_callbacks,
    out: *mut *mut consenso_node,
) -> consenso_result {
    guard(|| {
        // SAFETY: NULL or a caller's struct of `struct_size` bytes.
        let config = unsafe { args::read_versioned(config) }?;
        // SAFETY: as above.
        let callbacks = unsafe { args::read_versioned(callbacks) }?;
        // SAFETY: NULL or a writable handle pointer.
        let out = unsafe { out_ptr(out) }?;
        if callbacks.send.is_none() {
            return Err(fail(
                consenso_result::NullArgument,
                "callbacks.send is NULL",
            ));
        }
        let config = config.to_core()?;
        // Until the node started, a failure must not free the host's data.
        let host = Arc::new(Host {
            callbacks,
            owned: std::sync::atomic::AtomicBool::new(false),
        });
        let observer = callbacks.on_state_change.map(|cb| {
            let host = Arc::clone(&host);
            Box::new(move |change: RoleChange| {
                // SAFETY: the host's function and pointer.
                unsafe {
                    cb(
                        host.callbacks.user_data,
                        change.role.into(),
                        change.epoch,
                        change.leader.unwrap_or(0),
                    )
                }
            }) as consenso::runtime::StateChangeCallback
        });
        let started = AnyNode::open(
            &config,
            HostSend::start(Arc::clone(&host))?,
            HostMachine(Arc::clone(&host)),
            observer,
        );
        let node = started?;
        host.owned.store(true, std::sync::atomic::Ordering::SeqCst);
        out.set(into_handle(consenso_node { node, _host: host }));
        Ok(())
    })
}

/// The node behind a handle.
///
/// # Safety
/// `node` is NULL or a live handle from `consenso_node_start`.
unsafe fn node<'a>(node: *const consenso_node) -> Result<&'a AnyNode, consenso_result> {
    // SAFETY: forwarded contract.
    Ok(&unsafe { args::handle(node) }?.node)
}

/// Hands the node `len` bytes received from peer `from` (read during the
/// call only). Never blocks.
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT` (`node`, or `bytes` NULL with a
/// length); `CONSENSO_RESULT_MALFORMED_MESSAGE` (empty, truncated or
/// garbage bytes, another cluster id or protocol: dropped and counted);
/// `CONSENSO_RESULT_BUSY` (input queue full: dropped; the protocol
/// retries); `CONSENSO_RESULT_CLOSED`.
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_node_receive(
    node: *const consenso_node,
    from: u64,
    bytes: *const u8,
    len: usize,
) -> consenso_result {
    guard(|| {
        // SAFETY: the caller's live handle and `len` readable bytes.
        let (node, bytes) = unsafe { (self::node(node)?, args::bytes(bytes, len)?) };
        Ok(node.receive(from, bytes)?)
    })
}

/// A library-owned byte string (a proposal's response). Free with
/// `consenso_bytes_free`.
pub struct consenso_bytes {
    bytes: Vec<u8>,
}

/// Proposes `len` bytes of `command` (copied) and waits up to `timeout_ms`
/// (`CONSENSO_WAIT_FOREVER`: no limit) until it is applied on this node.
/// On success `*response` (if `response` is not NULL) gets what `apply`
/// wrote, to free with `consenso_bytes_free`. On
/// `CONSENSO_RESULT_NOT_LEADER`, `*leader` (if not NULL) gets the leader
/// this node knows of (0: none). Blocks the calling thread.
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT`; `CONSENSO_RESULT_NOT_LEADER`
/// (nothing proposed); `CONSENSO_RESULT_TIMEOUT` (it may still commit);
/// `CONSENSO_RESULT_CLOSED` (a command already sent may still commit);
/// `CONSENSO_RESULT_BUSY` (nothing proposed; retry later);
/// `CONSENSO_RESULT_DROPPED` (a leader change dropped it: it did not
/// commit); `CONSENSO_RESULT_TOO_LARGE`; `CONSENSO_RESULT_WOULD_BLOCK`
/// (called from one of this node's callbacks: use
/// `consenso_node_propose_async` there).
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_node_propose(
    node: *const consenso_node,
    command: *const u8,
    len: usize,
    timeout_ms: u64,
    response: *mut *mut consenso_bytes,
    leader: *mut u64,
) -> consenso_result {
    guard(|| {
        // SAFETY: the caller's live handle and `len` readable bytes.
        let (node, command) = unsafe { (self::node(node)?, args::bytes(command, len)?) };
        if ON_SEND_THREAD.with(|f| f.get()) {
            return Err(ProposeError::WouldBlock.into());
        }
        match node.propose(command.to_vec(), millis(timeout_ms)) {
            Ok(bytes) => {
                // SAFETY: NULL or a writable handle pointer.
                if let Ok(out) = unsafe { out_ptr(response) } {
                    out.set(into_handle(consenso_bytes { bytes }));
                }
                Ok(())
            }
            Err(e) => {
                if let ProposeError::NotLeader { leader: hint } = e {
                    // SAFETY: NULL or a writable u64.
                    if let Ok(out) = unsafe { out_ptr(leader) } {
                        out.set(hint.unwrap_or(0));
                    }
                }
                Err(e.into())
            }
        }
    })
}

/// Proposes `len` bytes of `command` (copied) without waiting: `done` is
/// called exactly once with the outcome (see `consenso_completion`), from a
/// node thread, or from this thread before this returns when the node
/// refuses at once. `user_data` is passed to `done`.
///
/// Errors (`done` is then not called): `CONSENSO_RESULT_NULL_ARGUMENT`
/// (`node`, `done`, or `command` NULL with a length).
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_node_propose_async(
    node: *const consenso_node,
    command: *const u8,
    len: usize,
    done: consenso_completion,
    user_data: *mut c_void,
) -> consenso_result {
    guard(|| {
        // SAFETY: the caller's live handle and `len` readable bytes.
        let (node, command) = unsafe { (self::node(node)?, args::bytes(command, len)?) };
        let done = done.ok_or(consenso_result::NullArgument)?;
        let (user_data, key) = (UserData(user_data), key(node));
        node.propose_with(
            command.to_vec(),
            Box::new(move |result| complete(done, &user_data, key, result.map(|r| (r, 0)))),
        );
        Ok(())
    })
}

/// Waits up to `timeout_ms` until a linearizable read may be served from
/// this node's state machine (a quorum confirmed it leads and everything
/// committed before the call is applied here); `*index` gets that log
/// index. Blocks the calling thread.
///
/// Errors: as `consenso_node_propose` (`*leader` on
/// `CONSENSO_RESULT_NOT_LEADER`), but never `TOO_LARGE` or `DROPPED`.
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_node_read_barrier(
    node: *const consenso_node,
    timeout_ms: u64,
    index: *mut u64,
    leader: *mut u64,
) -> consenso_result {
    guard(|| {
        // SAFETY: the caller's live handle.
        let node = unsafe { self::node(node) }?;
        // SAFETY: NULL or a writable u64.
        let index = unsafe { out_ptr(index) }?;
        if ON_SEND_THREAD.with(|f| f.get()) {
            return Err(ProposeError::WouldBlock.into());
        }
        match node.read_barrier(millis(timeout_ms)) {
            Ok(i) => {
                index.set(i);
                Ok(())
            }
            Err(e) => {
                if let ProposeError::NotLeader { leader: hint } = e {
                    // SAFETY: NULL or a writable u64.
                    if let Ok(out) = unsafe { out_ptr(leader) } {
                        out.set(hint.unwrap_or(0));
                    }
                }
                Err(e.into())
            }
        }
    })
}

/// The read barrier without waiting: `done` gets the read index (its
/// `index` argument) or why it failed, exactly once, as
/// `consenso_node_propose_async` calls it.
///
/// Errors (`done` not called): `CONSENSO_RESULT_NULL_ARGUMENT`.
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_node_read_barrier_async(
    node: *const consenso_node,
    done: consenso_completion,
    user_data: *mut c_void,
) -> consenso_result {
    guard(|| {
        // SAFETY: the caller's live handle.
        let node = unsafe { self::node(node) }?;
        let done = done.ok_or(consenso_result::NullArgument)?;
        let (user_data, key) = (UserData(user_data), key(node));
        node.read_barrier_with(Box::new(move |result| {
            complete(done, &user_data, key, result.map(|i| (Vec::new(), i)))
        }));
        Ok(())
    })
}

thread_local! {
    /// The nodes (by address) whose completion callbacks run on this thread
    /// now: a completion may run on the caller's thread (a refusal at
    /// once), where `is_node_thread` does not see it.
    static IN_COMPLETION: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A node's key in `IN_COMPLETION`.
fn key(node: &AnyNode) -> usize {
    node as *const AnyNode as usize
}

/// True inside one of `node`'s callbacks on this thread, where `shutdown`
/// and `free` would wait on (or free) the node running them.
fn inside_callback(node: &AnyNode) -> bool {
    node.is_node_thread()
        || IN_COMPLETION.with(|k| k.borrow().contains(&key(node)))
        || ON_SEND_THREAD.with(|f| f.get())
}

/// A completion's `user_data`, handed to whichever node thread completes.
struct UserData(*mut c_void);
// SAFETY: the header says completions run on node threads; the library
// never touches the pointer itself.
unsafe impl Send for UserData {}

/// Calls node `key`'s completion with `result`.
fn complete(
    done: unsafe extern "C" fn(*mut c_void, consenso_result, *const u8, usize, u64, u64),
    user_data: &UserData,
    key: usize,
    result: Result<(Vec<u8>, Index), ProposeError>,
) {
    IN_COMPLETION.with(|k| k.borrow_mut().push(key));
    call_completion(done, user_data, result);
    IN_COMPLETION.with(|k| k.borrow_mut().pop());
}

fn call_completion(
    done: unsafe extern "C" fn(*mut c_void, consenso_result, *const u8, usize, u64, u64),
    user_data: &UserData,
    result: Result<(Vec<u8>, Index), ProposeError>,
) {
    match result {
        // SAFETY: the host's function; the response lives for the call.
        Ok((response, index)) => unsafe {
            done(
                user_data.0,
                consenso_result::Ok,
                if response.is_empty() {
                    std::ptr::null()
                } else {
                    response.as_ptr()
                },
                response.len(),
                index,
                0,
            )
        },
        Err(e) => {
            let leader = match e {
                ProposeError::NotLeader { leader } => leader.unwrap_or(0),
                _ => 0,
            };
            // SAFETY: the host's function.
            unsafe {
                done(
                    user_data.0,
                    propose_code(&e),
                    std::ptr::null(),
                    0,
                    0,
                    leader,
                )
            }
        }
    }
}

/// Writes the node's state and counters into `*out`: set
/// `out->struct_size` to `sizeof(consenso_node_status)` first; the library
/// writes no more than that many bytes. Never blocks.
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT`; `CONSENSO_RESULT_INVALID_ARGUMENT`
/// (`struct_size` below 8).
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_node_get_status(
    node: *const consenso_node,
    out: *mut consenso_node_status,
) -> consenso_result {
    guard(|| {
        // SAFETY: the caller's live handle.
        let node = unsafe { self::node(node) }?;
        let s = node.status();
        let status = consenso_node_status {
            struct_size: std::mem::size_of::<consenso_node_status>() as u32,
            role: consenso_role::from(s.role) as u32,
            id: s.id,
            term: s.term,
            leader: s.leader.unwrap_or(0),
            voted_for: s.voted_for.unwrap_or(0),
            commit_index: s.commit_index,
            applied_index: s.applied_index,
            last_index: s.last_index,
            messages_sent: s.messages_sent,
            messages_received: s.messages_received,
            messages_rejected: s.messages_rejected,
            messages_dropped: s.messages_dropped,
            proposals_failed: s.proposals_failed,
            storage_errors: s.storage_errors,
            storage_syncs: s.storage_syncs,
            snapshot_index: s.snapshot_index,
            snapshots_taken: s.snapshots_taken,
            snapshots_installed: s.snapshots_installed,
            state_machine_failed: s.state_machine_failed,
            storage_failed: s.storage_failure.is_some(),
            closed: node.is_closed(),
        };
        // SAFETY: NULL or the caller's struct of `struct_size` bytes.
        unsafe { args::write_versioned(out, status) }
    })
}

/// Stops the node: pending proposals and reads complete with
/// `CONSENSO_RESULT_CLOSED`, and its threads are joined, so no callback
/// runs once this returns (`user_data_free` waits for
/// `consenso_node_free`). Blocks until then.
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT`; `CONSENSO_RESULT_CLOSED` (shut
/// down already, or stopped on a failure: its threads are joined all the
/// same); `CONSENSO_RESULT_WOULD_BLOCK` (from inside one of the node's
/// callbacks: nothing done).
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_node_shutdown(node: *const consenso_node) -> consenso_result {
    guard(|| {
        // SAFETY: the caller's live handle.
        let node = unsafe { self::node(node) }?;
        if inside_callback(node) {
            return Err(ProposeError::WouldBlock.into());
        }
        let was_closed = node.is_closed();
        node.shutdown();
        if was_closed {
            return Err(consenso_result::Closed);
        }
        Ok(())
    })
}

/// Shuts the node down (as `consenso_node_shutdown`) and frees it; then
/// calls `user_data_free`. NULL does nothing. No other call on the handle
/// may overlap this one or follow it.
///
/// Errors: `CONSENSO_RESULT_WOULD_BLOCK` (from inside one of the node's
/// callbacks: nothing freed, the handle stays valid);
/// `CONSENSO_RESULT_PANIC` (the handle is gone all the same).
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_node_free(node: *mut consenso_node) -> consenso_result {
    guard(|| {
        if node.is_null() {
            return Ok(());
        }
        // SAFETY: a live handle from `consenso_node_start`.
        if inside_callback(unsafe { self::node(node) }?) {
            return Err(ProposeError::WouldBlock.into());
        }
        // SAFETY: as above; C gives it up.
        drop(unsafe { args::take_handle(node) });
        Ok(())
    })
}

/// Appends `len` bytes to the response `apply` is writing (copied).
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT` (`response`, or `bytes` NULL
/// with a length).
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_response_write(
    response: *mut consenso_response,
    bytes: *const u8,
    len: usize,
) -> consenso_result {
    guard(|| {
        // SAFETY: the response of the running `apply`, and `len` bytes.
        let (response, bytes) = unsafe {
            (
                response.as_mut().ok_or(consenso_result::NullArgument)?,
                args::bytes(bytes, len)?,
            )
        };
        response.bytes.extend_from_slice(bytes);
        Ok(())
    })
}

/// The bytes of `b` (valid until it is freed) and their number in `*len`;
/// NULL with a length of 0 when empty.
///
/// Errors: `CONSENSO_RESULT_NULL_ARGUMENT`.
#[must_use]
#[no_mangle]
pub extern "C" fn consenso_bytes_data(
    b: *const consenso_bytes,
    data: *mut *const u8,
    len: *mut usize,
) -> consenso_result {
    guard(|| {
        // SAFETY: a live handle and two writable out-parameters.
        let (b, data, len) = unsafe { (args::handle(b)?, out_ptr(data)?, out_ptr(len)?) };
        data.set(if b.bytes.is_empty() {
            std::ptr::null()
        } else {
            b.bytes.as_ptr()
        });
        len.set(b.bytes.len());
        Ok(())
    })
}

/// Frees bytes the library returned. NULL does nothing.
#[no_mangle]
pub extern "C" fn consenso_bytes_free(b: *mut consenso_bytes) {
    guard_void(|| {
        // SAFETY: NULL or a live handle C gives up.
        drop(unsafe { args::take_handle(b) });
    })
}
