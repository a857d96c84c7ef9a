//! `lctl dl` and `lctl get_param`: the client-side devices of Lustre, derived from each
//! mount's filesystem configuration.
//!
//! A Lustre client mount sets up an `mgc` (one per MGS, shared by mounts of the same MGS),
//! an `lov` and an `lmv` named after the mount instance (`sheen-clilov-ffff...`), one `mdc`
//! per MDT and one `osc` per OST (`sheen-OST0000-osc-ffff...`). Sheen's client is a user
//! process, so there is no kernel pointer to name the instance after: the 16 hex digits are
//! a hash of the mount point and spec, stable for as long as the mount exists.

use std::path::PathBuf;

use sheen_wire::msg::{FsConfig, TargetInfo, STRIPE_COUNT_ALL};
use sheen_wire::TargetKind;

use crate::df::target_uuid;

/// One mounted (or directly contacted) filesystem.
#[derive(Clone, Debug)]
pub struct MountedFs {
    /// Where it is mounted; `None` when reached through `--mgs`/`--spec`.
    pub mount_dir: Option<PathBuf>,
    pub spec: String,
    pub mgs_nid: String,
    pub config: FsConfig,
}

/// One line of `lctl dl`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub kind: &'static str,
    pub name: String,
    pub uuid: String,
    pub refcount: u32,
    /// The target an `mdc`/`osc` connects to.
    pub target: Option<TargetInfo>,
    /// The mount this device belongs to (index into the mounts given).
    pub mount: usize,
}

/// FNV-1a, 64-bit: a small stable hash, so names do not change between runs.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        // Separate the parts so ("ab", "c") and ("a", "bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A UUID-shaped string (8-4-4-4-12 hex digits) derived from `parts`.
fn uuid_of(parts: &[&[u8]]) -> String {
    let a = fnv1a(&[parts.concat().as_slice(), b"hi"]);
    let b = fnv1a(&[parts.concat().as_slice(), b"lo"]);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

fn mount_key(m: &MountedFs) -> Vec<u8> {
    let dir = m
        .mount_dir
        .as_ref()
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default();
    [dir.as_bytes(), b"\0", m.spec.as_bytes()].concat()
}

/// The instance part of a mount's device names, shaped like a kernel pointer.
pub fn instance_id(m: &MountedFs) -> String {
    format!("ffff{:012x}", fnv1a(&[&mount_key(m)]) & 0xffff_ffff_ffff)
}

fn sorted(config: &FsConfig, kind: TargetKind) -> Vec<&TargetInfo> {
    let mut out: Vec<_> = config.targets.iter().filter(|t| t.kind == kind).collect();
    out.sort_by_key(|t| t.index);
    out
}

/// The device list of a set of mounts, in Lustre's set-up order.
pub fn devices(mounts: &[MountedFs]) -> Vec<Device> {
    let mut out: Vec<Device> = Vec::new();
    for (mount, m) in mounts.iter().enumerate() {
        let mgc_name = format!("MGC{}", m.mgs_nid);
        let shared_mgc = out
            .iter_mut()
            .find(|d| d.kind == "mgc" && d.name == mgc_name);
        match shared_mgc {
            Some(mgc) => mgc.refcount += 1,
            None => out.push(Device {
                kind: "mgc",
                uuid: uuid_of(&[b"mgc", mgc_name.as_bytes()]),
                name: mgc_name,
                refcount: 5,
                target: None,
                mount,
            }),
        }
        let fsname = &m.config.fsname;
        let instance = instance_id(m);
        let uuid = uuid_of(&[b"client", &mount_key(m)]);
        let dev =
            |kind: &'static str, name: String, refcount: u32, target: Option<TargetInfo>| Device {
                kind,
                name,
                uuid: uuid.clone(),
                refcount,
                target,
                mount,
            };
        out.push(dev("lov", format!("{fsname}-clilov-{instance}"), 4, None));
        out.push(dev("lmv", format!("{fsname}-clilmv-{instance}"), 4, None));
        for t in sorted(&m.config, TargetKind::Mdt) {
            let name = format!(
                "{}-mdc-{instance}",
                TargetKind::Mdt.target_name(fsname, t.index)
            );
            out.push(dev("mdc", name, 5, Some(t.clone())));
        }
        for t in sorted(&m.config, TargetKind::Ost) {
            let name = format!(
                "{}-osc-{instance}",
                TargetKind::Ost.target_name(fsname, t.index)
            );
            out.push(dev("osc", name, 5, Some(t.clone())));
        }
    }
    out
}

/// `lctl dl`: `  0 UP mgc MGC127.0.0.1@tcp <uuid> 5`.
pub fn format_dl(devices: &[Device]) -> String {
    devices
        .iter()
        .enumerate()
        .map(|(i, d)| {
            format!(
                "{i:>3} UP {} {} {} {}\n",
                d.kind, d.name, d.uuid, d.refcount
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Parameters

/// One `lctl get_param` parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub value: String,
}

fn target_obd(config: &FsConfig, kind: TargetKind) -> String {
    sorted(config, kind)
        .iter()
        .map(|t| format!("{}: {} ACTIVE\n", t.index, target_uuid(&config.fsname, t)))
        .collect()
}

/// The parameters Sheen can answer: `version`, and per device what its configuration
/// says (`lov.*.stripesize`, `lov.*.target_obd`, `osc.*.ost_conn_uuid`, ...).
pub fn params(mounts: &[MountedFs], version: &str) -> Vec<Param> {
    let mut out = vec![Param {
        name: "version".into(),
        value: version.into(),
    }];
    let mut push = |kind: &str, dev: &str, key: &str, value: String| {
        out.push(Param {
            name: format!("{kind}.{dev}.{key}"),
            value,
        });
    };
    for d in devices(mounts) {
        let config = &mounts[d.mount].config;
        let first_nid = |t: &Option<TargetInfo>| {
            t.as_ref()
                .and_then(|t| t.nids.first().cloned())
                .unwrap_or_default()
        };
        match d.kind {
            "mgc" => push(
                "mgc",
                &d.name,
                "mgs_conn_uuid",
                mounts[d.mount].mgs_nid.clone(),
            ),
            "lov" => {
                let n = sorted(config, TargetKind::Ost).len().to_string();
                let count = match config.default_stripe_count {
                    STRIPE_COUNT_ALL => "-1".to_string(),
                    c => c.to_string(),
                };
                push("lov", &d.name, "activeobd", n.clone());
                push("lov", &d.name, "numobd", n);
                push("lov", &d.name, "stripecount", count);
                push("lov", &d.name, "stripeoffset", "-1".into());
                push(
                    "lov",
                    &d.name,
                    "stripesize",
                    config.default_stripe_size.to_string(),
                );
                push(
                    "lov",
                    &d.name,
                    "target_obd",
                    target_obd(config, TargetKind::Ost),
                );
            }
            "lmv" => {
                let n = sorted(config, TargetKind::Mdt).len().to_string();
                push("lmv", &d.name, "activeobd", n.clone());
                push("lmv", &d.name, "numobd", n);
                push(
                    "lmv",
                    &d.name,
                    "target_obd",
                    target_obd(config, TargetKind::Mdt),
                );
            }
            "mdc" => push("mdc", &d.name, "mds_conn_uuid", first_nid(&d.target)),
            "osc" => {
                push("osc", &d.name, "active", "1".into());
                push("osc", &d.name, "ost_conn_uuid", first_nid(&d.target));
            }
            _ => {}
        }
        push(d.kind, &d.name, "uuid", d.uuid.clone());
    }
    out
}

/// Shell-style matching of a parameter pattern: `*` any run of characters, `?` one. Lustre
/// also accepts `/` for `.` between the parts of a name.
pub fn param_matches(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.replace('/', ".").chars().collect();
    let name: Vec<char> = name.chars().collect();
    // Iterative matcher with one backtrack point for the last `*`.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == '?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// How `get_param` prints: `name=value`, `-n` values only, `-N` names only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamStyle {
    NameValue,
    ValueOnly,
    NameOnly,
}

/// Formats matched parameters; values of several lines start on the line after `name=`,
/// as Lustre prints them.
pub fn format_params(params: &[&Param], style: ParamStyle) -> String {
    let mut out = String::new();
    for p in params {
        let multi_line = p.value.trim_end_matches('\n').contains('\n') || p.value.ends_with('\n');
        let value = p.value.trim_end_matches('\n');
        match style {
            ParamStyle::NameOnly => out.push_str(&format!("{}\n", p.name)),
            ParamStyle::ValueOnly => out.push_str(&format!("{value}\n")),
            ParamStyle::NameValue if multi_line => {
                out.push_str(&format!("{}=\n{value}\n", p.name));
            }
            ParamStyle::NameValue => out.push_str(&format!("{}={value}\n", p.name)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::tests::sample_fs;

    fn mounted(dir: &str) -> MountedFs {
        let fs = sample_fs();
        MountedFs {
            mount_dir: Some(PathBuf::from(dir)),
            spec: "127.0.0.1:7000@tcp:/sheen".into(),
            mgs_nid: fs.mgs_nid,
            config: fs.config,
        }
    }

    #[test]
    fn device_list() {
        let m = mounted("/mnt/sheen");
        let id = instance_id(&m);
        let devs = devices(std::slice::from_ref(&m));
        let uuid = &devs[1].uuid;
        let mgc_uuid = &devs[0].uuid;
        let want = format!(
            "  0 UP mgc MGC127.0.0.1:7000@tcp {mgc_uuid} 5\n\
             \x20 1 UP lov sheen-clilov-{id} {uuid} 4\n\
             \x20 2 UP lmv sheen-clilmv-{id} {uuid} 4\n\
             \x20 3 UP mdc sheen-MDT0000-mdc-{id} {uuid} 5\n\
             \x20 4 UP osc sheen-OST0000-osc-{id} {uuid} 5\n\
             \x20 5 UP osc sheen-OST0001-osc-{id} {uuid} 5\n"
        );
        assert_eq!(format_dl(&devs), want);
        assert_eq!(id.len(), 16);
        assert!(id.starts_with("ffff"));
        assert_eq!(uuid.len(), 36);
        assert_ne!(uuid, mgc_uuid);
    }

    #[test]
    fn second_mount_shares_the_mgc_and_gets_its_own_instance() {
        let mounts = [mounted("/mnt/a"), mounted("/mnt/b")];
        let devs = devices(&mounts);
        assert_eq!(devs.iter().filter(|d| d.kind == "mgc").count(), 1);
        assert_eq!(devs[0].refcount, 6);
        assert_eq!(devs.len(), 1 + 5 * 2);
        assert_ne!(instance_id(&mounts[0]), instance_id(&mounts[1]));
        assert_eq!(
            instance_id(&mounts[0]),
            instance_id(&mounted("/mnt/a")),
            "stable"
        );
    }

    #[test]
    fn parameters() {
        let m = mounted("/mnt/sheen");
        let id = instance_id(&m);
        let all = params(std::slice::from_ref(&m), "0.1.0");
        let get = |pat: &str| -> Vec<&Param> {
            all.iter().filter(|p| param_matches(pat, &p.name)).collect()
        };
        assert_eq!(
            format_params(&get("version"), ParamStyle::NameValue),
            "version=0.1.0\n"
        );
        assert_eq!(
            format_params(&get("version"), ParamStyle::ValueOnly),
            "0.1.0\n"
        );
        assert_eq!(
            format_params(&get("lov.*.stripesize"), ParamStyle::NameValue),
            format!("lov.sheen-clilov-{id}.stripesize=1048576\n")
        );
        assert_eq!(
            format_params(&get("lov/*/target_obd"), ParamStyle::NameValue),
            format!(
                "lov.sheen-clilov-{id}.target_obd=\n\
                 0: sheen-OST0000_UUID ACTIVE\n\
                 1: sheen-OST0001_UUID ACTIVE\n"
            )
        );
        assert_eq!(
            format_params(&get("osc.*.ost_conn_uuid"), ParamStyle::ValueOnly),
            "127.0.0.1:7001@tcp\n127.0.0.1:7002@tcp\n"
        );
        assert_eq!(
            format_params(&get("mdc.*.mds_conn_uuid"), ParamStyle::NameOnly),
            format!("mdc.sheen-MDT0000-mdc-{id}.mds_conn_uuid\n")
        );
        assert!(get("nothing.*").is_empty());
    }

    #[test]
    fn glob() {
        assert!(param_matches("version", "version"));
        assert!(!param_matches("version", "versions"));
        assert!(param_matches("*", "anything.at.all"));
        assert!(param_matches(
            "osc.*.active",
            "osc.sheen-OST0000-osc-ffff.active"
        ));
        assert!(!param_matches("osc.*.active", "osc.x.activeobd"));
        assert!(param_matches("l?v.*", "lov.x.numobd"));
        assert!(param_matches("*.*.uuid", "mgc.MGC127.0.0.1@tcp.uuid"));
        assert!(!param_matches("a*b", "acbc"));
        assert!(param_matches("a*b*c", "aXbYbZc"));
    }
}
