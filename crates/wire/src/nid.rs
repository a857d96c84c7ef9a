//! Network identifiers as Lustre writes them: `127.0.0.1@tcp`, `10.0.0.1@o2ib1`.
//!
//! Lustre listens on one port per node (988). To run several daemons on one host, Sheen also
//! accepts a port in the address part: `127.0.0.1:7001@tcp`. A NID on the default port
//! prints without it.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use crate::limits::DEFAULT_PORT;

/// The network type of a NID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NetType {
    Tcp,
    /// The RDMA-emulated transport; Lustre spells it `o2ib`, Sheen also accepts `rdma`.
    Rdma,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Nid {
    pub addr: IpAddr,
    pub port: u16,
    pub net: NetType,
    pub net_num: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NidError {
    #[error("NID {0:?} has no '@net' part")]
    MissingNet(String),
    #[error("NID {0:?} has an unknown network type (expected tcp, o2ib or rdma)")]
    UnknownNet(String),
    #[error("NID {0:?} has an invalid address")]
    BadAddress(String),
}

impl Nid {
    pub fn tcp(addr: SocketAddr) -> Nid {
        Nid {
            addr: addr.ip(),
            port: addr.port(),
            net: NetType::Tcp,
            net_num: 0,
        }
    }

    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.addr, self.port)
    }

    /// Parses a comma- or colon-free single NID.
    pub fn parse(s: &str) -> Result<Nid, NidError> {
        let s = s.trim();
        let (addr_part, net_part) = s
            .rsplit_once('@')
            .ok_or_else(|| NidError::MissingNet(s.to_string()))?;
        let net_name = net_part.trim_end_matches(|c: char| c.is_ascii_digit());
        let num = &net_part[net_name.len()..];
        let net = match net_name {
            "tcp" => NetType::Tcp,
            "o2ib" | "rdma" => NetType::Rdma,
            _ => return Err(NidError::UnknownNet(s.to_string())),
        };
        let net_num = if num.is_empty() {
            0
        } else {
            num.parse()
                .map_err(|_| NidError::UnknownNet(s.to_string()))?
        };
        let bad = || NidError::BadAddress(s.to_string());
        let (addr, port) = if let Ok(sa) = SocketAddr::from_str(addr_part) {
            (sa.ip(), sa.port())
        } else {
            let a = addr_part.trim_start_matches('[').trim_end_matches(']');
            (IpAddr::from_str(a).map_err(|_| bad())?, DEFAULT_PORT)
        };
        Ok(Nid {
            addr,
            port,
            net,
            net_num,
        })
    }
}

impl FromStr for Nid {
    type Err = NidError;
    fn from_str(s: &str) -> Result<Nid, NidError> {
        Nid::parse(s)
    }
}

impl fmt::Display for Nid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let net = match self.net {
            NetType::Tcp => "tcp",
            NetType::Rdma => "o2ib",
        };
        match (self.port == DEFAULT_PORT, self.addr) {
            (true, IpAddr::V4(a)) => write!(f, "{a}@{net}")?,
            (true, IpAddr::V6(a)) => write!(f, "{a}@{net}")?,
            (false, a) => write!(f, "{}@{net}", SocketAddr::new(a, self.port))?,
        }
        if self.net_num != 0 {
            write!(f, "{}", self.net_num)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Nid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The NIDs a target registers, in order of preference: where it listens, then its failover
/// NIDs (`--failnode`), each once.
pub fn registration_nids(listen: Nid, failnodes: &[Nid]) -> Vec<String> {
    let mut nids = vec![listen];
    for nid in failnodes {
        if !nids.contains(nid) {
            nids.push(*nid);
        }
    }
    nids.iter().map(Nid::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_like_lustre() {
        for s in [
            "127.0.0.1@tcp",
            "10.0.0.1@o2ib1",
            "127.0.0.1:7001@tcp",
            "192.168.1.2@tcp3",
        ] {
            assert_eq!(Nid::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(
            Nid::parse("127.0.0.1@rdma").unwrap().to_string(),
            "127.0.0.1@o2ib"
        );
        assert_eq!(Nid::parse("127.0.0.1@tcp").unwrap().port, 988);
    }

    #[test]
    fn rejects_bad_nids() {
        assert!(matches!(
            Nid::parse("127.0.0.1"),
            Err(NidError::MissingNet(_))
        ));
        assert!(matches!(
            Nid::parse("127.0.0.1@eth"),
            Err(NidError::UnknownNet(_))
        ));
        assert!(matches!(
            Nid::parse("host@tcp"),
            Err(NidError::BadAddress(_))
        ));
        assert!(matches!(
            Nid::parse("1.2.3.4@tcpx"),
            Err(NidError::UnknownNet(_))
        ));
    }

    #[test]
    fn registration_lists_listen_first_and_each_nid_once() {
        let a = Nid::parse("127.0.0.1:7001@tcp").unwrap();
        let b = Nid::parse("127.0.0.1:7002@tcp").unwrap();
        assert_eq!(
            registration_nids(a, &[b, a, b]),
            vec![a.to_string(), b.to_string()]
        );
        assert_eq!(registration_nids(b, &[]), vec![b.to_string()]);
    }
}
