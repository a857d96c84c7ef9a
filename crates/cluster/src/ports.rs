//! Free TCP ports on 127.0.0.1 for the daemons.
//!
//! Ports are chosen below the kernel's ephemeral range (`ip_local_port_range`), not by binding
//! port 0: a daemon restarted by a test must get its old port back, and a port from the
//! ephemeral range may meanwhile become the source port of some outgoing connection (the MDS
//! talking to the OSS, say), making the restart fail with `EADDRINUSE`. Each candidate is
//! checked by binding it; ports handed out once are never handed out again by this process, so
//! clusters started by parallel tests do not collide. Binding port 0 remains the fallback.

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::BuildHasher;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::sync::{Mutex, PoisonError};

/// Lowest port considered; below are well-known and commonly configured service ports.
const PORT_MIN: u16 = 10_000;
/// Used when the ephemeral range cannot be read.
const DEFAULT_EPHEMERAL_LOW: u16 = 32_768;
/// Random candidates tried before falling back to port 0.
const MAX_CANDIDATES: usize = 200;
/// Attempts in all, random candidates and port 0 together.
const MAX_ATTEMPTS: usize = MAX_CANDIDATES + 200;

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// Returns `n` distinct ports that were free on 127.0.0.1 a moment ago.
///
/// All candidates are held bound until every port is chosen, then released.
pub fn pick_free_ports(n: usize) -> io::Result<Vec<u16>> {
    let mut guard = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    let handed_out = guard.get_or_insert_with(HashSet::new);
    let high = ephemeral_low().saturating_sub(1).max(PORT_MIN + 1);
    let random = RandomState::new();
    let mut listeners = Vec::with_capacity(n);
    let mut ports = Vec::with_capacity(n);
    for attempt in 0..MAX_ATTEMPTS {
        if ports.len() == n {
            break;
        }
        let candidate = if attempt < MAX_CANDIDATES {
            let span = u64::from(high - PORT_MIN);
            let offset = random.hash_one(attempt) % span;
            PORT_MIN + u16::try_from(offset).unwrap_or(0)
        } else {
            0
        };
        if candidate != 0 && handed_out.contains(&candidate) {
            continue;
        }
        let address = SocketAddrV4::new(Ipv4Addr::LOCALHOST, candidate);
        let Ok(listener) = TcpListener::bind(address) else {
            continue;
        };
        let port = listener.local_addr()?.port();
        if handed_out.contains(&port) || ports.contains(&port) {
            continue;
        }
        ports.push(port);
        listeners.push(listener);
    }
    if ports.len() < n {
        let message = format!("found only {} of {n} free ports on 127.0.0.1", ports.len());
        return Err(io::Error::new(io::ErrorKind::AddrNotAvailable, message));
    }
    handed_out.extend(ports.iter().copied());
    Ok(ports)
}

/// Low end of the kernel's ephemeral port range.
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(DEFAULT_EPHEMERAL_LOW)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_bindable_and_below_ephemeral_range() {
        let ports = pick_free_ports(8).unwrap();
        assert_eq!(ports.len(), 8);
        let unique: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), 8, "{ports:?}");
        for &port in &ports {
            assert!(port >= PORT_MIN, "{port}");
            assert!(port < ephemeral_low(), "{port}");
            TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).unwrap();
        }
    }

    #[test]
    fn never_hands_out_a_port_twice() {
        let first = pick_free_ports(5).unwrap();
        let second = pick_free_ports(5).unwrap();
        assert!(
            first.iter().all(|port| !second.contains(port)),
            "{first:?} {second:?}"
        );
    }

    #[test]
    fn zero_ports() {
        assert!(pick_free_ports(0).unwrap().is_empty());
    }
}
