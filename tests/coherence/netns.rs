//! The two clients on two "machines": each mount runs in a network namespace of its own,
//! made by the test, reaching the daemons over a veth pair and a bridge the test also makes
//! (addresses in 10.213.0.0/16, nowhere else). The same coherence checks as on loopback, and
//! a link cut: B's link goes down while it holds a lock another client needs, so B is
//! evicted; the link comes back and B carries on.
//!
//! Everything made is removed when the test ends (namespaces, which take their veth ends
//! with them, and the bridge), also when it fails.

use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::FileExt;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{run_netns, Env, Logs, Side, CALLBACK_TIMEOUT};

const LIMIT: Duration = Duration::from_secs(90);

/// A bridge in the root namespace and two namespaces, each joined to it by a veth pair.
#[derive(Debug)]
pub struct TestNet {
    /// The bridge's address: where the daemons listen.
    pub host: Ipv4Addr,
    /// The namespaces of mount A and mount B.
    pub namespaces: [String; 2],
    bridge: String,
    /// The root-namespace end of each veth pair.
    links: [String; 2],
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl TestNet {
    /// Makes the bridge, the namespaces and the links; panics (after removing what it made)
    /// if any step fails.
    pub fn create() -> TestNet {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        // Names and a subnet per test (tests of one process run in parallel; other test
        // processes have other pids): five tests a process, fifty processes.
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 5;
        let pid = std::process::id();
        let octet = u8::try_from((pid % 50) * 5 + n + 1).unwrap_or(1);
        let tag = (pid % 10_000) * 5 + n;
        let net = TestNet {
            host: Ipv4Addr::new(10, 213, octet, 1),
            namespaces: [format!("sheen-{tag}-a"), format!("sheen-{tag}-b")],
            bridge: format!("shbr{tag}"),
            links: [format!("shv{tag}a"), format!("shv{tag}b")],
        };
        if let Err(e) = net.set_up(octet) {
            drop(net);
            panic!("setting up the test network: {e}");
        }
        net
    }

    fn set_up(&self, octet: u8) -> Result<(), String> {
        let host = format!("{}/24", self.host);
        ip(&["link", "add", &self.bridge, "type", "bridge"])?;
        ip(&["addr", "add", &host, "dev", &self.bridge])?;
        ip(&["link", "set", &self.bridge, "up"])?;
        for (i, (ns, link)) in self.namespaces.iter().zip(&self.links).enumerate() {
            let peer = "eth0";
            let addr = format!("10.213.{octet}.{}/24", i + 2);
            ip(&["netns", "add", ns])?;
            ip(&[
                "link", "add", link, "type", "veth", "peer", "name", peer, "netns", ns,
            ])?;
            ip(&["link", "set", link, "master", &self.bridge])?;
            ip(&["link", "set", link, "up"])?;
            ip(&["-n", ns, "addr", "add", &addr, "dev", peer])?;
            ip(&["-n", ns, "link", "set", peer, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// Takes the link of `side` down (`up` false) or brings it back.
    pub fn set_link(&self, side: Side, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&["link", "set", &self.links[side.idx()], state])
            .unwrap_or_else(|e| panic!("link {state}: {e}"));
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

#[test]
fn write_is_visible_across_namespaces() {
    run_netns(
        "write_is_visible_across_namespaces",
        LIMIT,
        Logs::Clean,
        crate::visibility::write_is_visible,
    );
}

#[test]
fn rename_and_unlink_are_visible_across_namespaces() {
    run_netns(
        "rename_and_unlink_are_visible_across_namespaces",
        LIMIT,
        Logs::Clean,
        crate::visibility::rename_and_unlink_are_visible,
    );
}

#[test]
fn randomized_model_across_namespaces() {
    run_netns(
        "randomized_model_across_namespaces",
        LIMIT,
        Logs::Clean,
        crate::model::model_test,
    );
}

/// B reads a file (a PR lock), then its link goes down; A writes the file: the OST calls B
/// back, B cannot answer, so after the callback timeout B is evicted and A's write goes
/// through. The link comes back: B reconnects, and reads what A wrote.
#[test]
fn client_cut_off_is_evicted_and_recovers() {
    run_netns(
        "client_cut_off_is_evicted_and_recovers",
        LIMIT,
        Logs::MayHoldErrors,
        cut_off,
    );
}

fn cut_off(env: &Env) {
    let net = env.net.as_ref().expect("a test network");
    let old = sheen_tests::pattern(11, 200 << 10);
    let new = sheen_tests::pattern(12, 200 << 10);
    let on_a = env.on(Side::A).join("cut");
    let on_b = env.on(Side::B).join("cut");
    fs::write(&on_a, &old).expect("write on A");
    assert!(
        fs::read(&on_b).expect("read on B") == old,
        "B reads A's file"
    );
    net.set_link(Side::B, false);
    let started = Instant::now();
    let f = fs::OpenOptions::new()
        .write(true)
        .open(&on_a)
        .expect("open on A");
    f.write_all_at(&new, 0)
        .expect("write on A while B is cut off");
    f.sync_all().expect("fsync on A");
    let took = started.elapsed();
    assert!(
        took < CALLBACK_TIMEOUT + Duration::from_secs(10),
        "A waited {took:?} for a client that is cut off"
    );
    drop(f);
    net.set_link(Side::B, true);
    // B finds its connections gone (evicted), reconnects and drops what it cached.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if fs::read(&on_b).is_ok_and(|data| data == new) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B did not read A's new data within a minute of the link coming back"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
