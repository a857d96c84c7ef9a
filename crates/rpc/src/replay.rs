//! Replay [ptlrpc replay]: what a client keeps of its uncommitted requests, and how a
//! replayed request carries the original bulk and reply to the server.
//!
//! A server that replies before it commits (its reply's `transno` is above the
//! `last_committed` it reports) may lose the change in a crash. The import keeps every such
//! request, ordered by transno, until a reply reports it committed; when it connects to a
//! new instance of the server it sends them again, in transno order, with `FLAG_REPLAY`,
//! the original xid and `header.transno` set to the original transno. The bulk of a replay
//! is an envelope: the original bulk's length (u64 LE), the original bulk, then the body of
//! the reply the client got the first time, so the server can redo the change exactly (the
//! same FID for a create) or answer with it.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use sheen_wire::Opcode;
use tracing::{error, warn};

/// Past this many kept requests the import warns (once per crossing): the server is not
/// committing, or its replies do not say so.
pub const REPLAY_LIST_WARN: usize = 100_000;
/// Kept requests at most: past this, new ones are not kept (an error is logged; their
/// changes are lost if the server crashes before it commits them).
pub const REPLAY_LIST_MAX: usize = 1_000_000;

const ENVELOPE_LEN_BYTES: usize = 8;

/// What a replayed request carries besides its body (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayInfo {
    /// The transno the request's first execution got.
    pub transno: u64,
    /// The body of the reply to the first execution.
    pub reply: Bytes,
}

/// The bulk of a replay: the original bulk and the original reply body.
pub(crate) fn encode_envelope(bulk: &Bytes, reply: &Bytes) -> Bytes {
    let mut out = BytesMut::with_capacity(ENVELOPE_LEN_BYTES + bulk.len() + reply.len());
    out.put_u64_le(bulk.len() as u64);
    out.extend_from_slice(bulk);
    out.extend_from_slice(reply);
    out.freeze()
}

/// Splits a replay's bulk into (original bulk, original reply body).
pub(crate) fn decode_envelope(envelope: &Bytes) -> Result<(Bytes, Bytes), &'static str> {
    let len_bytes = envelope
        .get(..ENVELOPE_LEN_BYTES)
        .and_then(|b| <[u8; ENVELOPE_LEN_BYTES]>::try_from(b).ok())
        .ok_or("replay envelope shorter than its length field")?;
    let bulk_len = u64::from_le_bytes(len_bytes);
    let rest = envelope.len() - ENVELOPE_LEN_BYTES;
    let bulk_len = usize::try_from(bulk_len)
        .ok()
        .filter(|n| *n <= rest)
        .ok_or("replay envelope's bulk length exceeds the envelope")?;
    let bulk_end = ENVELOPE_LEN_BYTES + bulk_len;
    Ok((
        envelope.slice(ENVELOPE_LEN_BYTES..bulk_end),
        envelope.slice(bulk_end..),
    ))
}

/// One request kept for replay.
#[derive(Clone, Debug)]
pub(crate) struct Kept {
    pub opcode: Opcode,
    pub target_idx: u32,
    pub xid: u64,
    pub body: Bytes,
    pub bulk: Bytes,
    pub reply: Bytes,
    pub transno: u64,
}

/// The requests an import keeps for replay, by transno.
#[derive(Default)]
pub(crate) struct ReplayList {
    kept: BTreeMap<u64, Kept>,
    warned: bool,
}

impl ReplayList {
    /// Keeps `k` unless its transno is already committed (`last_committed`).
    pub fn keep(&mut self, k: Kept, last_committed: u64) {
        if k.transno <= last_committed {
            return;
        }
        if self.kept.len() >= REPLAY_LIST_MAX {
            error!(
                xid = k.xid,
                transno = k.transno,
                op = k.opcode.name(),
                "replay list full ({REPLAY_LIST_MAX}): this change is lost if the server \
                 crashes before committing it"
            );
            return;
        }
        self.kept.insert(k.transno, k);
        if self.kept.len() > REPLAY_LIST_WARN && !self.warned {
            self.warned = true;
            warn!(
                kept = self.kept.len(),
                "more than {REPLAY_LIST_WARN} uncommitted requests kept for replay: is the \
                 server committing?"
            );
        }
    }

    /// Drops what `last_committed` covers.
    pub fn prune(&mut self, last_committed: u64) {
        if self
            .kept
            .first_key_value()
            .is_some_and(|(t, _)| *t <= last_committed)
        {
            self.kept = self.kept.split_off(&last_committed.saturating_add(1));
        }
        if self.kept.len() <= REPLAY_LIST_WARN {
            self.warned = false;
        }
    }

    /// Drops the request kept under `transno`.
    pub fn remove(&mut self, transno: u64) {
        self.kept.remove(&transno);
    }

    /// Every kept request, in transno order.
    pub fn snapshot(&self) -> Vec<Kept> {
        self.kept.values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.kept.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(transno: u64) -> Kept {
        Kept {
            opcode: Opcode::MdsReint,
            target_idx: 0,
            xid: 100 + transno,
            body: Bytes::new(),
            bulk: Bytes::new(),
            reply: Bytes::new(),
            transno,
        }
    }

    #[test]
    fn envelope_round_trips_and_rejects_bad_lengths() {
        let bulk = Bytes::from_static(b"bulk data");
        let reply = Bytes::from_static(b"reply");
        let env = encode_envelope(&bulk, &reply);
        assert_eq!(decode_envelope(&env), Ok((bulk, reply)));
        let empty = encode_envelope(&Bytes::new(), &Bytes::new());
        assert_eq!(decode_envelope(&empty), Ok((Bytes::new(), Bytes::new())));
        assert!(decode_envelope(&Bytes::from_static(b"short")).is_err());
        let mut lying = BytesMut::new();
        lying.put_u64_le(u64::MAX);
        lying.extend_from_slice(b"xx");
        assert!(decode_envelope(&lying.freeze()).is_err());
    }

    #[test]
    fn list_keeps_uncommitted_in_order_and_prunes() {
        let mut l = ReplayList::default();
        for t in [5, 3, 9, 7] {
            l.keep(kept(t), 2);
        }
        l.keep(kept(1), 2);
        let order: Vec<u64> = l.snapshot().iter().map(|k| k.transno).collect();
        assert_eq!(order, [3, 5, 7, 9]);
        l.prune(5);
        let order: Vec<u64> = l.snapshot().iter().map(|k| k.transno).collect();
        assert_eq!(order, [7, 9]);
        l.remove(9);
        l.prune(100);
        assert_eq!(l.len(), 0);
    }
}
