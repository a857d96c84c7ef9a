//! Finding Sheen mounts in `/proc/self/mountinfo`, as Lustre's tools search `/etc/mtab`.
//!
//! A Sheen client mount is a FUSE mount of type `fuse.sheen` whose source is the mount spec
//! (`127.0.0.1:7000@tcp:/sheen`). Paths in mountinfo escape space, tab, newline and
//! backslash as three octal digits (`\040`), see proc(5).

use std::path::{Path, PathBuf};

/// The filesystem type the FUSE mount registers.
pub const SHEEN_FSTYPE: &str = "fuse.sheen";

/// One Sheen client mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SheenMount {
    /// Where it is mounted.
    pub dir: PathBuf,
    /// The mount spec it was mounted from.
    pub spec: String,
}

/// The Sheen mounts in mountinfo text, in mount order. Malformed lines are skipped.
pub fn sheen_mounts(mountinfo: &str) -> Vec<SheenMount> {
    mountinfo
        .lines()
        .filter_map(parse_line)
        .filter(|(fstype, _)| fstype == SHEEN_FSTYPE)
        .map(|(_, mount)| mount)
        .collect()
}

/// How many FUSE mounts (of any FUSE filesystem) mountinfo lists on `mount_dir`.
pub fn count_fuse_mounts(mountinfo: &str, mount_dir: &Path) -> usize {
    mountinfo
        .lines()
        .filter_map(parse_line)
        .filter(|(fstype, m)| m.dir == mount_dir && fstype.starts_with("fuse"))
        .count()
}

/// The FUSE connection of the newest FUSE mount on `mount_dir`: its name under
/// `/sys/fs/fuse/connections` (the mount's device number as the kernel encodes it,
/// `major << 20 | minor`), read from mountinfo without a request to the filesystem.
pub fn fuse_connection(mountinfo: &str, mount_dir: &Path) -> Option<u32> {
    mountinfo
        .lines()
        .filter(|line| {
            parse_line(line)
                .is_some_and(|(fstype, m)| m.dir == mount_dir && fstype.starts_with("fuse"))
        })
        .filter_map(|line| {
            let (major, minor) = line.split(' ').nth(2)?.split_once(':')?;
            let (major, minor) = (major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?);
            (major < 1 << 12 && minor < 1 << 20).then_some(major << 20 | minor)
        })
        .next_back()
}

/// The mount that holds `path` (already made absolute and canonical): the one with the
/// longest mount directory that is a prefix of it, component-wise.
pub fn mount_for<'a>(mounts: &'a [SheenMount], path: &Path) -> Option<&'a SheenMount> {
    mounts
        .iter()
        .filter(|m| path.starts_with(&m.dir))
        .max_by_key(|m| m.dir.components().count())
}

/// Parses `36 35 98:0 /root /mnt/point opts [optional...] - fstype source superopts`.
fn parse_line(line: &str) -> Option<(String, SheenMount)> {
    let (before, after) = line.split_once(" - ")?;
    let mount_dir = before.split(' ').nth(4)?;
    let mut fields = after.split(' ');
    let fstype = fields.next()?;
    let source = fields.next()?;
    let mount = SheenMount {
        dir: PathBuf::from(unescape(mount_dir)),
        spec: unescape(source),
    };
    Some((unescape(fstype), mount))
}

/// Undoes the kernel's `\ooo` escapes; anything else is kept as written.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 4) {
            Some([b'\\', a, b, c]) if [a, b, c].iter().all(|d| (b'0'..=b'7').contains(d)) => {
                let value = [a, b, c]
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(**d - b'0'));
                u8::try_from(value).ok()
            }
            _ => None,
        };
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
90 27 0:52 / /mnt/sheen rw,nosuid,nodev,relatime shared:5 - fuse.sheen 127.0.0.1:7000@tcp:/sheen rw
91 90 0:53 / /mnt/sheen/inner rw - fuse.sheen 10.0.0.1@tcp:/other rw,user_id=0
92 27 0:54 / /tmp/with\\040space rw - fuse.sheen 127.0.0.1@tcp:/sp rw
93 27 0:55 / /mnt/plainfuse rw - fuse sshfs rw
garbage
";

    #[test]
    fn finds_sheen_mounts() {
        let mounts = sheen_mounts(SAMPLE);
        let dirs: Vec<_> = mounts.iter().map(|m| m.dir.to_str().unwrap()).collect();
        assert_eq!(dirs, ["/mnt/sheen", "/mnt/sheen/inner", "/tmp/with space"]);
        assert_eq!(mounts[0].spec, "127.0.0.1:7000@tcp:/sheen");
    }

    #[test]
    fn finds_the_fuse_connection_of_a_mount() {
        let conn = |p: &str| fuse_connection(SAMPLE, Path::new(p));
        assert_eq!(conn("/mnt/sheen"), Some(52));
        assert_eq!(conn("/tmp/with space"), Some(54));
        assert_eq!(conn("/mnt/plainfuse"), Some(55));
        // Not FUSE, or not mounted.
        assert_eq!(conn("/proc"), None);
        assert_eq!(conn("/mnt/none"), None);
        // Mounted twice: the newest; a major number is encoded as the kernel does.
        let twice = format!("{SAMPLE}94 27 8:3 / /mnt/sheen rw - fuse.sheen x@tcp:/s rw\n");
        assert_eq!(
            fuse_connection(&twice, Path::new("/mnt/sheen")),
            Some(8 << 20 | 3)
        );
    }

    #[test]
    fn picks_the_deepest_mount() {
        let mounts = sheen_mounts(SAMPLE);
        let pick = |p: &str| mount_for(&mounts, Path::new(p)).map(|m| m.spec.as_str());
        assert_eq!(pick("/mnt/sheen/a/b"), Some("127.0.0.1:7000@tcp:/sheen"));
        assert_eq!(pick("/mnt/sheen"), Some("127.0.0.1:7000@tcp:/sheen"));
        assert_eq!(pick("/mnt/sheen/inner/x"), Some("10.0.0.1@tcp:/other"));
        assert_eq!(pick("/mnt/sheenx"), None);
        assert_eq!(pick("/tmp/with space/f"), Some("127.0.0.1@tcp:/sp"));
    }

    #[test]
    fn unescapes_octal_only() {
        assert_eq!(unescape("a\\040b"), "a b");
        assert_eq!(unescape("a\\134b\\011c"), "a\\b\tc");
        assert_eq!(unescape("a\\b"), "a\\b");
        assert_eq!(unescape("a\\04"), "a\\04");
        assert_eq!(unescape("\\777"), "\\777");
    }

    const ANY: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
98 22 0:50 / /mnt/sheen rw,nosuid shared:60 - fuse.sheen 127.0.0.1:7000@tcp:/sheen rw,user_id=0
99 22 0:51 / /mnt/with\\040space rw,relatime - fuse.sheen x@tcp:/s rw
100 22 0:52 / /mnt/other rw,relatime - tmpfs tmpfs rw
";

    #[test]
    fn counts_fuse_mounts_on_a_dir() {
        assert_eq!(count_fuse_mounts(ANY, Path::new("/mnt/sheen")), 1);
        assert_eq!(count_fuse_mounts(ANY, Path::new("/mnt/with space")), 1);
        assert_eq!(count_fuse_mounts(ANY, Path::new("/mnt/other")), 0);
        assert_eq!(count_fuse_mounts(ANY, Path::new("/mnt")), 0);
        assert_eq!(count_fuse_mounts("garbage\n\n - \n", Path::new("/")), 0);
    }

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape("a\\040b\\134c"), "a b\\c");
        assert_eq!(unescape("trailing\\04"), "trailing\\04");
        assert_eq!(unescape("\\999"), "\\999");
    }
}
