//! Limits of the lock manager, in one place. Each server table and client cache takes its
//! numbers from a config whose defaults are these.

use std::time::Duration;

/// Most locks (granted and waiting) one client may hold in one lock table; more is refused
/// with EAGAIN, so one client cannot exhaust a server's memory.
pub const MAX_LOCKS_PER_CLIENT: usize = 100_000;
/// Most locks waiting on one resource.
pub const MAX_WAITERS_PER_RESOURCE: usize = 1024;
/// How long a holder has to answer a blocking callback (cancel or downgrade) before it is
/// evicted. Lustre's `ldlm_timeout` is adaptive, at least 20 s; we take a fixed default.
pub const CALLBACK_TIMEOUT: Duration = Duration::from_secs(30);
/// Most unused locks a client keeps cached per server (Lustre's `lru_size`); beyond this
/// the least recently used are cancelled. Two MDT locks per file a client looked up or
/// created (LOOKUP and attributes): enough for the names of a directory of 16,000 files,
/// well under what a server lets one client hold ([`MAX_LOCKS_PER_CLIENT`]).
pub const CLIENT_LRU_MAX_UNUSED: usize = 32768;
/// Blocking callbacks remembered for locks a client does not know yet (the callback
/// overtook the enqueue reply); beyond this the oldest are forgotten.
pub const CLIENT_EARLY_BLOCKING_MAX: usize = 256;
/// An extent lock that had to wait, or that lands on a resource with at least this many
/// granted locks, grows by at most [`EXTENT_GROW_CONTENDED_BYTES`] on each side (Lustre's
/// contention rule), so clients writing disjoint ranges do not take each other's ranges.
pub const EXTENT_GROW_CONTENDED_LOCKS: usize = 32;
/// See [`EXTENT_GROW_CONTENDED_LOCKS`].
pub const EXTENT_GROW_CONTENDED_BYTES: u64 = 32 << 20;

const _: () = assert!(MAX_WAITERS_PER_RESOURCE <= MAX_LOCKS_PER_CLIENT);
const _: () = assert!(CLIENT_LRU_MAX_UNUSED < MAX_LOCKS_PER_CLIENT);
const _: () = assert!(CALLBACK_TIMEOUT.as_secs() >= 1);
const _: () = assert!(EXTENT_GROW_CONTENDED_BYTES.is_power_of_two());
