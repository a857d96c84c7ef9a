//! `lfs df`, `lfs osts` and `lfs mdts`: target usage and target lists in Lustre's formats.
//!
//! `lfs df` prints a header, one row per MDT then per OST (`sheen-OST0000_UUID ...
//! /mnt/x[OST:0]`), a blank line, and `filesystem_summary:` summing the OSTs' space and the
//! MDTs' inodes, then another blank line. Columns: the UUID left-aligned in 20, three
//! numbers right-aligned in 11, `Use%` in 4, the mount point. Use% rounds up, as df(1).

use sheen_wire::msg::{FsConfig, StatfsReply, TargetInfo};
use sheen_wire::TargetKind;

use crate::size::{human, HumanBase};
use crate::source::TargetStatfs;

/// How `lfs df` shows numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DfOpts {
    /// `-i`: inodes instead of blocks.
    pub inodes: bool,
    /// `-h` / `-H`: bytes in human units instead of 1K blocks.
    pub human: Option<HumanBase>,
}

/// The UUID Lustre shows for a target: its name plus `_UUID`.
pub fn target_uuid(fsname: &str, t: &TargetInfo) -> String {
    let name = if t.name.is_empty() {
        t.kind.target_name(fsname, t.index)
    } else {
        t.name.clone()
    };
    format!("{name}_UUID")
}

fn kind_label(kind: TargetKind) -> &'static str {
    match kind {
        TargetKind::Mgs => "MGS",
        TargetKind::Mdt => "MDT",
        TargetKind::Ost => "OST",
    }
}

/// MDTs then OSTs, each by index; the MGS has no space of its own to show.
fn sorted_targets<T>(items: &[T], info: impl Fn(&T) -> &TargetInfo) -> Vec<&T> {
    let rank = |k: TargetKind| match k {
        TargetKind::Mdt => 0,
        TargetKind::Ost => 1,
        TargetKind::Mgs => 2,
    };
    let mut out: Vec<&T> = items
        .iter()
        .filter(|t| info(t).kind != TargetKind::Mgs)
        .collect();
    out.sort_by_key(|t| (rank(info(t).kind), info(t).index));
    out
}

/// Usage numbers of one row before formatting: (total, used, available, percent used).
fn row_numbers(st: &StatfsReply, opts: &DfOpts) -> (u64, u64, u64, u64) {
    let (total, used, avail, ratio_used, ratio_avail) = if opts.inodes {
        let used = st.files.saturating_sub(st.ffree);
        (
            u128::from(st.files),
            u128::from(used),
            u128::from(st.ffree),
            used,
            st.ffree,
        )
    } else {
        let bsize = u128::from(st.bsize);
        let shift = if opts.human.is_some() { 0 } else { 10 };
        let used = st.blocks.saturating_sub(st.bfree);
        (
            (u128::from(st.blocks) * bsize) >> shift,
            (u128::from(used) * bsize) >> shift,
            (u128::from(st.bavail) * bsize) >> shift,
            used,
            st.bavail,
        )
    };
    let clamp = |v: u128| u64::try_from(v).unwrap_or(u64::MAX);
    let whole = u128::from(ratio_used) + u128::from(ratio_avail);
    let percent = if whole == 0 {
        0
    } else {
        (u128::from(ratio_used) * 100).div_ceil(whole)
    };
    (clamp(total), clamp(used), clamp(avail), clamp(percent))
}

fn number(v: u64, opts: &DfOpts) -> String {
    match opts.human {
        Some(base) => human(v, base),
        None => v.to_string(),
    }
}

fn row(uuid: &str, st: &StatfsReply, opts: &DfOpts, mount_dir: &str, tag: &str) -> String {
    let (total, used, avail, percent) = row_numbers(st, opts);
    format!(
        "{uuid:<20} {:>11} {:>11} {:>11} {:>4} {mount_dir}{tag}\n",
        number(total, opts),
        number(used, opts),
        number(avail, opts),
        format!("{percent:>3}%"),
    )
}

pub fn header(opts: &DfOpts) -> String {
    let (a, b, c, d) = match (opts.inodes, opts.human) {
        (true, _) => ("Inodes", "IUsed", "IFree", "IUse%"),
        (false, Some(_)) => ("bytes", "Used", "Available", "Use%"),
        (false, None) => ("1K-blocks", "Used", "Available", "Use%"),
    };
    format!("{:<20} {a:>11} {b:>11} {c:>11} {d:>4} Mounted on\n", "UUID")
}

/// Formats `lfs df` for one mount. Returns the text and whether any target failed.
pub fn format_df(
    fsname: &str,
    mount_dir: &str,
    stats: &[TargetStatfs],
    opts: &DfOpts,
) -> (String, bool) {
    let mut out = header(opts);
    let mut failed = false;
    // The summary: OST space in bytes (block size 1), MDT inodes.
    let mut sum = StatfsReply {
        bsize: 1,
        ..StatfsReply::default()
    };
    let mut ost_ffree = 0u64;
    for (info, result) in sorted_targets(stats, |s| &s.0) {
        let uuid = target_uuid(fsname, info);
        match result {
            Ok(st) => {
                let tag = format!("[{}:{}]", kind_label(info.kind), info.index);
                out.push_str(&row(&uuid, st, opts, mount_dir, &tag));
                let bytes = |blocks: u64| blocks.saturating_mul(u64::from(st.bsize));
                match info.kind {
                    TargetKind::Mdt => {
                        sum.files = sum.files.saturating_add(st.files);
                        sum.ffree = sum.ffree.saturating_add(st.ffree);
                    }
                    TargetKind::Ost => {
                        sum.blocks = sum.blocks.saturating_add(bytes(st.blocks));
                        sum.bfree = sum.bfree.saturating_add(bytes(st.bfree));
                        sum.bavail = sum.bavail.saturating_add(bytes(st.bavail));
                        ost_ffree = ost_ffree.saturating_add(st.ffree);
                    }
                    TargetKind::Mgs => {}
                }
            }
            Err(e) => {
                failed = true;
                out.push_str(&format!("{uuid:<20}: {e}\n"));
            }
        }
    }
    // Every new file needs an OST object too, so fewer free objects than free inodes
    // caps the free inodes (Lustre does the same, to match statfs(2) on the client).
    if ost_ffree < sum.ffree {
        sum.files = sum.files - sum.ffree + ost_ffree;
        sum.ffree = ost_ffree;
    }
    out.push('\n');
    out.push_str(&row("filesystem_summary:", &sum, opts, mount_dir, ""));
    out.push('\n');
    (out, failed)
}

/// `lfs osts` / `lfs mdts`: `OBDS:` (or `MDTS:`) then `0: sheen-OST0000_UUID ACTIVE`.
pub fn format_target_list(config: &FsConfig, kind: TargetKind) -> String {
    let title = if kind == TargetKind::Mdt {
        "MDTS:"
    } else {
        "OBDS:"
    };
    let mut out = format!("{title}\n");
    for t in sorted_targets(&config.targets, |t| t)
        .into_iter()
        .filter(|t| t.kind == kind)
    {
        out.push_str(&format!(
            "{}: {} ACTIVE\n",
            t.index,
            target_uuid(&config.fsname, t)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::tests::{sample_fs, statfs, target};

    fn check(got: &str, want: &str) {
        assert_eq!(got, want, "\n--- got ---\n{got}\n--- want ---\n{want}");
    }

    #[test]
    fn blocks() {
        let fs = sample_fs();
        let (got, failed) = format_df("sheen", "/mnt/sheen", &fs.statfs, &DfOpts::default());
        assert!(!failed);
        check(
            &got,
            "UUID                   1K-blocks        Used   Available Use% Mounted on\n\
             sheen-MDT0000_UUID       1048576        4576     1044000   1% /mnt/sheen[MDT:0]\n\
             sheen-OST0000_UUID      10485760     2485760     7600000  25% /mnt/sheen[OST:0]\n\
             sheen-OST0001_UUID      10485760        1760    10400000   1% /mnt/sheen[OST:1]\n\
             \n\
             filesystem_summary:     20971520     2487520    18000000  13% /mnt/sheen\n\
             \n",
        );
    }

    #[test]
    fn inodes() {
        let fs = sample_fs();
        let opts = DfOpts {
            inodes: true,
            human: None,
        };
        let (got, _) = format_df("sheen", "/mnt/sheen", &fs.statfs, &opts);
        check(
            &got,
            "UUID                      Inodes       IUsed       IFree IUse% Mounted on\n\
             sheen-MDT0000_UUID        100000        1000       99000   1% /mnt/sheen[MDT:0]\n\
             sheen-OST0000_UUID         50000       10000       40000  20% /mnt/sheen[OST:0]\n\
             sheen-OST0001_UUID         50000          10       49990   1% /mnt/sheen[OST:1]\n\
             \n\
             filesystem_summary:        90990        1000       89990   2% /mnt/sheen\n\
             \n",
        );
    }

    #[test]
    fn human_units() {
        let fs = sample_fs();
        let opts = DfOpts {
            inodes: false,
            human: Some(HumanBase::Binary),
        };
        let (got, _) = format_df("sheen", "/mnt/sheen", &fs.statfs, &opts);
        check(
            &got,
            "UUID                       bytes        Used   Available Use% Mounted on\n\
             sheen-MDT0000_UUID       1024.0M        4.5M     1019.5M   1% /mnt/sheen[MDT:0]\n\
             sheen-OST0000_UUID         10.0G        2.4G        7.2G  25% /mnt/sheen[OST:0]\n\
             sheen-OST0001_UUID         10.0G        1.7M        9.9G   1% /mnt/sheen[OST:1]\n\
             \n\
             filesystem_summary:        20.0G        2.4G       17.2G  13% /mnt/sheen\n\
             \n",
        );
    }

    #[test]
    fn failed_target_and_rounding_up() {
        let stats = vec![
            (
                target(TargetKind::Ost, 1),
                Err("Connection refused".to_string()),
            ),
            // 1 used block of 1000: 0.1% used shows as 1%.
            (
                target(TargetKind::Ost, 0),
                Ok(statfs(1000, 999, 999, 10, 10)),
            ),
            (target(TargetKind::Mdt, 0), Ok(statfs(0, 0, 0, 0, 0))),
        ];
        let (got, failed) = format_df("sheen", "/m", &stats, &DfOpts::default());
        assert!(failed);
        check(
            &got,
            "UUID                   1K-blocks        Used   Available Use% Mounted on\n\
             sheen-MDT0000_UUID             0           0           0   0% /m[MDT:0]\n\
             sheen-OST0000_UUID          4000           4        3996   1% /m[OST:0]\n\
             sheen-OST0001_UUID  : Connection refused\n\
             \n\
             filesystem_summary:         4000           4        3996   1% /m\n\
             \n",
        );
    }

    #[test]
    fn target_lists() {
        let fs = sample_fs();
        check(
            &format_target_list(&fs.config, TargetKind::Ost),
            "OBDS:\n0: sheen-OST0000_UUID ACTIVE\n1: sheen-OST0001_UUID ACTIVE\n",
        );
        check(
            &format_target_list(&fs.config, TargetKind::Mdt),
            "MDTS:\n0: sheen-MDT0000_UUID ACTIVE\n",
        );
    }
}
