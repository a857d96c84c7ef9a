//! `lctl list_nids` and `lctl ping`: this node's NIDs and a reachability check.
//!
//! Sheen has no LNet module to ask, so `list_nids` lists the addresses of the interfaces
//! that are up (IPv4, not loopback) as `IP@tcp`; on a host with only loopback it prints
//! `127.0.0.1@tcp`, which is where a single-host Sheen cluster listens.
//!
//! `ping` is a TCP connect to the NID's address and port with a deadline: it tells that a
//! Sheen service accepts connections there, not that it answers RPCs (the client library
//! does not expose OBD_PING).

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use sheen_wire::Nid;

use crate::error::describe;

/// Lustre prints pinged peers as `PID-NID`; 12345 is LNet's well-known process id.
const LNET_PID: u32 = 12345;

pub trait NetOps {
    /// Addresses of the interfaces that are up, loopback included.
    fn interface_addrs(&self) -> io::Result<Vec<(IpAddr, bool)>>;
    /// OBD_PING to the service at `nid` within `timeout`.
    fn obd_ping(&self, nid: &Nid, timeout: Duration) -> io::Result<()>;
}

/// The host's real network.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostNet;

impl NetOps for HostNet {
    fn interface_addrs(&self) -> io::Result<Vec<(IpAddr, bool)>> {
        let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
        // SAFETY: getifaddrs fills `head` with a list we free below with freeifaddrs.
        if unsafe { libc::getifaddrs(&mut head) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut out = Vec::new();
        let mut cur = head;
        while !cur.is_null() {
            // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
            let ifa = unsafe { &*cur };
            cur = ifa.ifa_next;
            let up = ifa.ifa_flags & (libc::IFF_UP as libc::c_uint) != 0;
            let loopback = ifa.ifa_flags & (libc::IFF_LOOPBACK as libc::c_uint) != 0;
            if ifa.ifa_addr.is_null() || !up {
                continue;
            }
            // SAFETY: a non-null ifa_addr points to a sockaddr whose family says its type.
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: AF_INET means the sockaddr is a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                out.push((IpAddr::V4(ip), loopback));
            }
        }
        // SAFETY: `head` came from getifaddrs and is freed once.
        unsafe { libc::freeifaddrs(head) };
        Ok(out)
    }

    fn obd_ping(&self, nid: &Nid, timeout: Duration) -> io::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(sheen_client::ping_nid(*nid, timeout))
            .map_err(|e| io::Error::from_raw_os_error(e.errno().raw()))
    }
}

/// `lctl list_nids`: one `IP@tcp` per line, non-loopback addresses first found.
pub fn format_nids(addrs: &[(IpAddr, bool)]) -> String {
    let mut nids: Vec<String> = Vec::new();
    for (ip, _) in addrs.iter().filter(|(_, loopback)| !loopback) {
        let nid = format!("{ip}@tcp");
        if !nids.contains(&nid) {
            nids.push(nid);
        }
    }
    if nids.is_empty() {
        nids.push("127.0.0.1@tcp".to_string());
    }
    nids.iter().map(|n| format!("{n}\n")).collect()
}

/// `lctl ping NID`: `12345-NID` when the service at the NID answers OBD_PING in time.
pub fn ping(net: &dyn NetOps, nid_text: &str, timeout: Duration) -> Result<String, String> {
    let nid = Nid::parse(nid_text).map_err(|e| format!("failed to ping {nid_text}: {e}"))?;
    net.obd_ping(&nid, timeout)
        .map(|()| format!("{LNET_PID}-{nid}\n"))
        .map_err(|e| format!("failed to ping {nid}: {}", describe(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::net::{SocketAddr, TcpListener};

    struct FakeNet {
        addrs: Vec<(IpAddr, bool)>,
        reachable: Vec<SocketAddr>,
        asked: RefCell<Vec<SocketAddr>>,
    }

    impl NetOps for FakeNet {
        fn interface_addrs(&self) -> io::Result<Vec<(IpAddr, bool)>> {
            Ok(self.addrs.clone())
        }
        fn obd_ping(&self, nid: &Nid, _timeout: Duration) -> io::Result<()> {
            let addr = nid.socket_addr();
            self.asked.borrow_mut().push(addr);
            if self.reachable.contains(&addr) {
                Ok(())
            } else {
                Err(io::Error::from_raw_os_error(libc::ECONNREFUSED))
            }
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn nids() {
        let addrs = [
            (ip("127.0.0.1"), true),
            (ip("10.0.0.5"), false),
            (ip("192.168.1.2"), false),
        ];
        assert_eq!(format_nids(&addrs), "10.0.0.5@tcp\n192.168.1.2@tcp\n");
        assert_eq!(format_nids(&[(ip("127.0.0.1"), true)]), "127.0.0.1@tcp\n");
    }

    #[test]
    fn ping_connects_to_the_nid_port() {
        let net = FakeNet {
            addrs: vec![],
            reachable: vec!["127.0.0.1:7000".parse().unwrap()],
            asked: RefCell::new(vec![]),
        };
        let t = Duration::from_secs(1);
        assert_eq!(
            ping(&net, "127.0.0.1:7000@tcp", t),
            Ok("12345-127.0.0.1:7000@tcp\n".into())
        );
        let err = ping(&net, "127.0.0.1@tcp", t).unwrap_err();
        assert!(err.starts_with("failed to ping 127.0.0.1@tcp: "), "{err}");
        assert_eq!(
            net.asked.borrow()[1],
            "127.0.0.1:988".parse::<SocketAddr>().unwrap(),
            "default port"
        );
        assert!(ping(&net, "not-a-nid", t).is_err());
    }

    #[test]
    fn host_network() {
        let addrs = HostNet.interface_addrs().unwrap();
        assert!(
            addrs.iter().any(|(a, lo)| *lo && a.is_loopback()),
            "{addrs:?}"
        );
        // A TCP listener that is no Sheen service accepts the connection but never answers
        // CONNECT: not a ping (the integration suite pings real daemons).
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let nid = format!("127.0.0.1:{port}@tcp");
        let err = ping(&HostNet, &nid, Duration::from_millis(300)).unwrap_err();
        assert!(err.starts_with(&format!("failed to ping {nid}: ")), "{err}");
        drop(listener);
    }
}
