//! Reading `/proc/self/mountinfo`, to know when a FUSE mount is up and when it is gone.
//!
//! Format (proc(5)): `36 35 98:0 /root /mnt/point rw,noatime shared:1 - fuse.sheen src rw`.
//! Paths escape space, tab, newline and backslash as three octal digits (`\040`).

use std::io;
use std::path::{Path, PathBuf};

/// One line of mountinfo, the fields the launcher needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// `major:minor` of the mounted filesystem; for FUSE, the minor names the connection in
    /// `/sys/fs/fuse/connections/`.
    pub device: String,
    /// Where it is mounted, unescaped.
    pub mount_point: PathBuf,
    /// Filesystem type, e.g. `fuse.sheen`.
    pub fs_type: String,
    /// Mount source, unescaped.
    pub source: String,
}

impl MountEntry {
    /// Whether this is a FUSE mount (`fuse`, `fuse.NAME` or `fuseblk`).
    pub fn is_fuse(&self) -> bool {
        self.fs_type == "fuse" || self.fs_type == "fuseblk" || self.fs_type.starts_with("fuse.")
    }
}

/// Parses mountinfo text; malformed lines are skipped.
pub fn parse(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_line).collect()
}

/// Reads and parses `/proc/self/mountinfo`.
pub fn read() -> io::Result<Vec<MountEntry>> {
    Ok(parse(&std::fs::read_to_string("/proc/self/mountinfo")?))
}

/// The entry mounted last at `mount_point` (the one visible there), if any.
pub fn find(mount_point: &Path) -> io::Result<Option<MountEntry>> {
    Ok(read()?
        .into_iter()
        .rev()
        .find(|entry| entry.mount_point == mount_point))
}

fn parse_line(line: &str) -> Option<MountEntry> {
    let (before, after) = line.split_once(" - ")?;
    let mut fields = before.split(' ');
    let _mount_id = fields.next()?;
    let _parent_id = fields.next()?;
    let device = fields.next()?;
    let _root = fields.next()?;
    let mount_point = fields.next()?;
    let mut fields = after.split(' ');
    let fs_type = fields.next()?;
    let source = fields.next()?;
    Some(MountEntry {
        device: device.to_owned(),
        mount_point: PathBuf::from(unescape(mount_point)),
        fs_type: unescape(fs_type),
        source: unescape(source),
    })
}

/// Undoes the kernel's `\ooo` escapes; anything else is kept as written.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|digits| bytes[i] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)));
        match octal.map(|d| d.iter().fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'))) {
            Some(value) if value <= 0xff => {
                out.push(value as u8);
                i += 4;
            }
            _ => {
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
36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue
90 27 0:52 / /tmp/x/mnt rw,nosuid,relatime shared:5 - fuse.sheen 127.0.0.1:7000@tcp:/sheen rw
91 27 0:53 / /tmp/with\\040space/a\\134b\\011c rw - fuse sheen rw
garbage line
";

    #[test]
    fn parses_fields() {
        let entries = parse(SAMPLE);
        assert_eq!(entries.len(), 4);
        assert_eq!(
            entries[2],
            MountEntry {
                device: "0:52".to_owned(),
                mount_point: PathBuf::from("/tmp/x/mnt"),
                fs_type: "fuse.sheen".to_owned(),
                source: "127.0.0.1:7000@tcp:/sheen".to_owned(),
            }
        );
        assert!(entries[2].is_fuse());
        assert!(!entries[1].is_fuse());
    }

    #[test]
    fn unescapes_paths() {
        let entries = parse(SAMPLE);
        assert_eq!(entries[3].mount_point, Path::new("/tmp/with space/a\\b\tc"));
        assert_eq!(entries[3].fs_type, "fuse");
        assert!(entries[3].is_fuse());
    }

    #[test]
    fn unescape_keeps_what_is_not_an_escape() {
        assert_eq!(unescape("a\\b"), "a\\b");
        assert_eq!(unescape("a\\04"), "a\\04");
        assert_eq!(unescape("a\\089"), "a\\089");
        assert_eq!(unescape("\\012\\040"), "\n ");
        assert_eq!(unescape("\\777"), "\\777");
    }

    #[test]
    fn reads_own_mountinfo() {
        let entries = read().unwrap();
        assert!(
            entries
                .iter()
                .any(|entry| entry.mount_point == Path::new("/")),
            "{entries:?}"
        );
    }
}
