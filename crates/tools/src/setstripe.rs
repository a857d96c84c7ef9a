//! `lfs setstripe`: building a layout template and handing it to the mount.
//!
//! The template is a plain [`Layout`] with no objects; fields left at 0 (and the offset at
//! [`STRIPE_OFFSET_ANY`]) mean "the default". What happens depends on the path:
//! - a directory: the template becomes its default layout (setxattr `lustre.lov`);
//! - a path that does not exist: a new empty file is created and given the template, and
//!   the MDS allocates its objects accordingly;
//! - an existing file that already has objects: refused ("stripe already set"), as on
//!   Lustre, where a file's layout is fixed once instantiated.
//!
//! `-d` removes a directory's default layout.

use std::path::Path;

use sheen_wire::limits::{POOL_NAME_MAX_CHARS, STRIPE_COUNT_MAX};
use sheen_wire::msg::{pattern, Layout, StripeLayout};
use sheen_wire::msg::{STRIPE_COUNT_ALL, STRIPE_DEFAULT, STRIPE_OFFSET_ANY};

use crate::error::{is_not_supported, ToolError};
use crate::fsops::{FileKind, FsOps, LOV_XATTR};
use crate::getstripe::read_layout;

/// Highest OST index a layout can name (Lustre keeps OST indices in 16 bits).
const OST_INDEX_MAX: u32 = 0xfffe;

/// The stripe settings given on the command line; `None` means "the default".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StripeRequest {
    /// Stripe count, [`STRIPE_COUNT_ALL`] for -1.
    pub count: Option<u32>,
    pub size: Option<u64>,
    /// First OST index, [`STRIPE_OFFSET_ANY`] for -1.
    pub offset: Option<u32>,
    pub pool: Option<String>,
}

/// Parses `-c COUNT`: -1 (all OSTs), 0 (the default) or 1..=2000.
pub fn parse_stripe_count(text: &str) -> Result<u32, String> {
    let n: i64 = text
        .trim()
        .parse()
        .map_err(|_| format!("bad stripe count '{text}'"))?;
    match n {
        -1 => Ok(STRIPE_COUNT_ALL),
        0.. if n <= i64::from(STRIPE_COUNT_MAX) => Ok(n as u32),
        _ => Err(format!(
            "bad stripe count '{text}': must be -1 or 0 to {STRIPE_COUNT_MAX}"
        )),
    }
}

/// Parses `-i INDEX`: -1 (any OST) or an OST index.
pub fn parse_stripe_index(text: &str) -> Result<u32, String> {
    let n: i64 = text
        .trim()
        .parse()
        .map_err(|_| format!("bad stripe offset '{text}'"))?;
    match n {
        -1 => Ok(STRIPE_OFFSET_ANY),
        0.. if n <= i64::from(OST_INDEX_MAX) => Ok(n as u32),
        _ => Err(format!(
            "bad stripe offset '{text}': must be -1 or 0 to {OST_INDEX_MAX}"
        )),
    }
}

/// Parses `-p POOL` (`fsname.pool` is accepted, as on Lustre; the fsname part is dropped).
pub fn parse_pool(text: &str) -> Result<String, String> {
    let name = text.split_once('.').map_or(text, |(_, pool)| pool);
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if name.is_empty() || name.chars().count() > POOL_NAME_MAX_CHARS || !ok_chars {
        return Err(format!(
            "bad pool name '{text}': must be 1 to {POOL_NAME_MAX_CHARS} characters of \
             [A-Za-z0-9_-]"
        ));
    }
    Ok(name.to_string())
}

/// The layout template a request stands for.
pub fn template(req: &StripeRequest) -> Layout {
    Layout::plain(StripeLayout {
        pattern: pattern::RAID0,
        stripe_size: req.size.unwrap_or(0),
        stripe_count: req.count.unwrap_or(STRIPE_DEFAULT),
        stripe_offset: req.offset.unwrap_or(STRIPE_OFFSET_ANY),
        pool: req.pool.clone().unwrap_or_default(),
        objects: Vec::new(),
    })
}

/// What `setstripe` did to a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Created a new file with the layout.
    Created,
    /// Set a directory's default layout.
    DirDefault,
    /// Set the layout of an existing file that had no objects yet.
    File,
}

fn map_set_error(path: &Path, e: std::io::Error) -> ToolError {
    if is_not_supported(&e) {
        ToolError::NotSheen(path.to_path_buf())
    } else if e.raw_os_error() == Some(libc::EEXIST) {
        ToolError::StripeAlreadySet(path.to_path_buf())
    } else {
        ToolError::io("cannot set layout of", path, e)
    }
}

/// Applies `req` to `path`.
pub fn setstripe(fs: &dyn FsOps, path: &Path, req: &StripeRequest) -> Result<Applied, ToolError> {
    let value = sheen_wire::encode(&template(req));
    let kind = fs
        .kind(path, true)
        .map_err(|e| ToolError::io("cannot access", path, e))?;
    match kind {
        None => {
            fs.create_with_xattr(path, LOV_XATTR, &value)
                .map_err(|e| map_set_error(path, e))?;
            Ok(Applied::Created)
        }
        Some(FileKind::Dir) => {
            fs.set_xattr(path, LOV_XATTR, &value)
                .map_err(|e| map_set_error(path, e))?;
            Ok(Applied::DirDefault)
        }
        Some(FileKind::Regular) => {
            let instantiated = read_layout(fs, path)?
                .is_some_and(|l| l.components.iter().any(|c| !c.stripe.objects.is_empty()));
            if instantiated {
                return Err(ToolError::StripeAlreadySet(path.to_path_buf()));
            }
            fs.set_xattr(path, LOV_XATTR, &value)
                .map_err(|e| map_set_error(path, e))?;
            Ok(Applied::File)
        }
        Some(FileKind::Other) => Err(ToolError::Failed(format!(
            "cannot set layout of '{}': not a regular file or directory",
            path.display()
        ))),
    }
}

/// `setstripe -d`: removes a directory's default layout (a no-op when it has none).
pub fn delete_default(fs: &dyn FsOps, path: &Path) -> Result<(), ToolError> {
    match fs
        .kind(path, true)
        .map_err(|e| ToolError::io("cannot access", path, e))?
    {
        Some(FileKind::Dir) => {}
        Some(_) => {
            return Err(ToolError::Failed(format!(
                "cannot delete default layout of '{}': not a directory",
                path.display()
            )))
        }
        None => {
            return Err(ToolError::io(
                "cannot access",
                path,
                std::io::Error::from_raw_os_error(libc::ENOENT),
            ))
        }
    }
    match fs.remove_xattr(path, LOV_XATTR) {
        Ok(_) => Ok(()),
        Err(e) if is_not_supported(&e) => Err(ToolError::NotSheen(path.to_path_buf())),
        Err(e) => Err(ToolError::io("cannot delete default layout of", path, e)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::fsops::FsOps;
    use sheen_wire::msg::OstObject;
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::ffi::OsString;
    use std::io;
    use std::path::PathBuf;

    /// An in-memory filesystem: kinds and xattrs by path.
    #[derive(Default)]
    pub(crate) struct FakeFs {
        pub kinds: RefCell<BTreeMap<PathBuf, FileKind>>,
        pub xattrs: RefCell<BTreeMap<(PathBuf, String), Vec<u8>>>,
        /// Paths whose xattr calls fail with ENOTSUP (outside Sheen).
        pub foreign: Vec<PathBuf>,
    }

    impl FakeFs {
        pub fn add(&self, path: &str, kind: FileKind) {
            self.kinds.borrow_mut().insert(PathBuf::from(path), kind);
        }
        pub fn set_layout(&self, path: &str, layout: &Layout) {
            let key = (PathBuf::from(path), LOV_XATTR.to_string());
            self.xattrs
                .borrow_mut()
                .insert(key, sheen_wire::encode(layout).to_vec());
        }
        pub fn layout(&self, path: &str) -> Option<Layout> {
            let key = (PathBuf::from(path), LOV_XATTR.to_string());
            self.xattrs
                .borrow()
                .get(&key)
                .map(|v| sheen_wire::decode(v).unwrap())
        }
        fn check_foreign(&self, path: &Path) -> io::Result<()> {
            if self.foreign.iter().any(|f| path.starts_with(f)) {
                return Err(io::Error::from_raw_os_error(libc::ENOTSUP));
            }
            Ok(())
        }
    }

    impl FsOps for FakeFs {
        fn kind(&self, path: &Path, _follow: bool) -> io::Result<Option<FileKind>> {
            Ok(self.kinds.borrow().get(path).copied())
        }
        fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
            if self.kinds.borrow().contains_key(path) {
                Ok(path.to_path_buf())
            } else {
                Err(io::Error::from_raw_os_error(libc::ENOENT))
            }
        }
        fn get_xattr(&self, path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
            self.check_foreign(path)?;
            Ok(self
                .xattrs
                .borrow()
                .get(&(path.to_path_buf(), name.to_string()))
                .cloned())
        }
        fn set_xattr(&self, path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
            self.check_foreign(path)?;
            let key = (path.to_path_buf(), name.to_string());
            self.xattrs.borrow_mut().insert(key, value.to_vec());
            Ok(())
        }
        fn remove_xattr(&self, path: &Path, name: &str) -> io::Result<bool> {
            self.check_foreign(path)?;
            let key = (path.to_path_buf(), name.to_string());
            Ok(self.xattrs.borrow_mut().remove(&key).is_some())
        }
        fn create_with_xattr(&self, path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
            self.check_foreign(path)?;
            if self.kinds.borrow().contains_key(path) {
                return Err(io::Error::from_raw_os_error(libc::EEXIST));
            }
            self.kinds
                .borrow_mut()
                .insert(path.to_path_buf(), FileKind::Regular);
            self.set_xattr(path, name, value)
        }
        fn read_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
            let kinds = self.kinds.borrow();
            Ok(kinds
                .keys()
                .filter(|p| p.parent() == Some(path))
                .filter_map(|p| p.file_name().map(|n| n.to_os_string()))
                .collect())
        }
    }

    #[test]
    fn parses_counts_indices_pools() {
        assert_eq!(parse_stripe_count("-1"), Ok(STRIPE_COUNT_ALL));
        assert_eq!(parse_stripe_count("0"), Ok(0));
        assert_eq!(parse_stripe_count("4"), Ok(4));
        assert_eq!(parse_stripe_count("2000"), Ok(2000));
        assert!(parse_stripe_count("2001").is_err());
        assert!(parse_stripe_count("-2").is_err());
        assert!(parse_stripe_count("x").is_err());
        assert_eq!(parse_stripe_index("-1"), Ok(STRIPE_OFFSET_ANY));
        assert_eq!(parse_stripe_index("3"), Ok(3));
        assert!(parse_stripe_index("-5").is_err());
        assert_eq!(parse_pool("fast"), Ok("fast".to_string()));
        assert_eq!(parse_pool("sheen.fast"), Ok("fast".to_string()));
        assert!(parse_pool("a_pool_name_too_long").is_err());
        assert!(parse_pool("").is_err());
        assert!(parse_pool("bad name").is_err());
    }

    #[test]
    fn template_leaves_unset_fields_default() {
        let t = template(&StripeRequest {
            count: Some(4),
            ..Default::default()
        });
        let s = t.as_plain().unwrap();
        assert_eq!(
            (s.stripe_count, s.stripe_size, s.stripe_offset, s.pattern),
            (4, 0, STRIPE_OFFSET_ANY, pattern::RAID0)
        );
        assert!(s.objects.is_empty() && s.pool.is_empty());
    }

    fn req() -> StripeRequest {
        StripeRequest {
            count: Some(2),
            size: Some(4 << 20),
            offset: Some(1),
            pool: Some("fast".into()),
        }
    }

    #[test]
    fn directory_gets_a_default() {
        let fs = FakeFs::default();
        fs.add("/mnt/d", FileKind::Dir);
        assert_eq!(
            setstripe(&fs, Path::new("/mnt/d"), &req()).unwrap(),
            Applied::DirDefault
        );
        assert_eq!(fs.layout("/mnt/d"), Some(template(&req())));
        delete_default(&fs, Path::new("/mnt/d")).unwrap();
        assert_eq!(fs.layout("/mnt/d"), None);
        // Deleting again is fine: there is simply no default.
        delete_default(&fs, Path::new("/mnt/d")).unwrap();
    }

    #[test]
    fn new_file_is_created_with_the_template() {
        let fs = FakeFs::default();
        assert_eq!(
            setstripe(&fs, Path::new("/mnt/new"), &req()).unwrap(),
            Applied::Created
        );
        assert_eq!(
            fs.kind(Path::new("/mnt/new"), true).unwrap(),
            Some(FileKind::Regular)
        );
        assert_eq!(fs.layout("/mnt/new"), Some(template(&req())));
    }

    #[test]
    fn instantiated_file_is_refused() {
        let fs = FakeFs::default();
        fs.add("/mnt/f", FileKind::Regular);
        let mut layout = template(&req());
        layout.components[0].stripe.objects = vec![OstObject {
            ost_idx: 1,
            oid: 5,
            seq: 0,
        }];
        fs.set_layout("/mnt/f", &layout);
        let err = setstripe(&fs, Path::new("/mnt/f"), &req()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "setstripe error for '/mnt/f': stripe already set"
        );
        assert_eq!(
            fs.layout("/mnt/f"),
            Some(layout),
            "the layout must be left alone"
        );
    }

    #[test]
    fn file_without_objects_takes_the_layout() {
        let fs = FakeFs::default();
        fs.add("/mnt/f", FileKind::Regular);
        assert_eq!(
            setstripe(&fs, Path::new("/mnt/f"), &req()).unwrap(),
            Applied::File
        );
    }

    #[test]
    fn refusals() {
        let fs = FakeFs {
            foreign: vec![PathBuf::from("/tmp")],
            ..Default::default()
        };
        fs.add("/tmp/d", FileKind::Dir);
        fs.add("/mnt/f", FileKind::Regular);
        fs.add("/mnt/sock", FileKind::Other);
        let err = setstripe(&fs, Path::new("/tmp/d"), &req()).unwrap_err();
        assert_eq!(err.to_string(), "'/tmp/d' is not on a Sheen filesystem");
        let err = setstripe(&fs, Path::new("/tmp/new"), &req()).unwrap_err();
        assert!(matches!(err, ToolError::NotSheen(_)), "{err}");
        assert!(setstripe(&fs, Path::new("/mnt/sock"), &req()).is_err());
        let err = delete_default(&fs, Path::new("/mnt/f")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot delete default layout of '/mnt/f': not a directory"
        );
        assert!(delete_default(&fs, Path::new("/mnt/none")).is_err());
    }
}
