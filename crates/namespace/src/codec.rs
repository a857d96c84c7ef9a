//! The on-disk format: tree names, key and value encodings, and the directory name hash.
//!
//! Byte order is explicit everywhere. Keys are big-endian so that they sort numerically;
//! a FID is always its 16-byte big-endian form (`Fid::to_be_bytes`), in keys and values.
//! Other integers in values are little-endian. Every value starts with a format byte so that
//! the encoding can change later. Decoding never panics: short, long or malformed values
//! become [`NsError::Corrupt`].
//!
//! | tree      | key                                    | value                              |
//! |-----------|----------------------------------------|------------------------------------|
//! | `inodes`  | fid                                    | [`Inode`]: attrs, `..`, counts, symlink |
//! | `dirents` | parent fid + name hash (u64 BE) + name | child fid + file type (u32 LE)     |
//! | `layouts` | fid                                    | format byte + rkyv `Layout`        |
//! | `xattrs`  | fid + name                             | raw value                          |
//! | `meta`    | ASCII name (`META_*`)                  | u32/u64 LE counters and version    |

use sheen_wire::limits::PATH_MAX_BYTES;
use sheen_wire::{Attr, Fid, Layout, OstObject, Timespec};

use crate::{DestroyRecord, NsError};

pub(crate) const TREE_INODES: &[u8] = b"inodes";
pub(crate) const TREE_DIRENTS: &[u8] = b"dirents";
pub(crate) const TREE_LAYOUTS: &[u8] = b"layouts";
pub(crate) const TREE_XATTRS: &[u8] = b"xattrs";
pub(crate) const TREE_META: &[u8] = b"meta";

/// The database format version (u32 LE).
pub(crate) const META_FORMAT: &[u8] = b"format";
/// The next FID to hand out: seq u64 LE + oid u32 LE.
pub(crate) const META_NEXT_FID: &[u8] = b"next_fid";
/// The last committed transaction number (u64 LE).
pub(crate) const META_TRANSNO: &[u8] = b"transno";
/// The number of inodes (u64 LE).
pub(crate) const META_INODES: &[u8] = b"inodes";
/// Prefix of the per-OST watermark keys: `ost_last_oid/` + OST index (u32 BE) → the highest
/// object id any layout ever used on that OST (u64 LE). Objects above it were precreated
/// and never used; the MDS destroys them at start.
pub(crate) const META_OST_LAST_OID: &[u8] = b"ost_last_oid/";

/// Prefix of the client reply records (Lustre's last_rcvd): `rcvd/` + client uuid + NUL +
/// xid (u64 BE) → the transno of the change that request made (u64 LE), written in the
/// change's own transaction; see [`crate::Namespace::with_client_record`].
pub(crate) const META_RCVD: &[u8] = b"rcvd/";

/// Clients known to have made changes (`client/` + uuid → empty): the clients an MDS that
/// commits asynchronously waits for in recovery, with those that have `rcvd/` records.
pub(crate) const META_CLIENT: &[u8] = b"client/";

/// Written at a clean shutdown: the last transno, all of it flushed (`clean_shutdown` → u64
/// LE); removed at the next open by [`crate::Namespace::take_clean_shutdown`].
pub(crate) const META_CLEAN_SHUTDOWN: &[u8] = b"clean_shutdown";

/// OST objects of removed files (Lustre's unlink llog): `destroy/` + the file's fid + the
/// dropped layout's generation (u32 BE) → format byte + (OST index u32 LE, object id u64
/// LE) per object. Written in the transaction that drops the layout (the file's last link
/// goes, or its layout is replaced, which bumps the generation: the key is unique), removed
/// once the OSTs have destroyed every object ([`crate::Namespace::forget_destroy`]); an MDS
/// destroys what is left at start ([`crate::Namespace::pending_destroys`]).
pub(crate) const META_DESTROY: &[u8] = b"destroy/";
const DESTROY_FORMAT: u8 = 1;

pub(crate) fn destroy_key(fid: Fid, layout_gen: u32) -> Vec<u8> {
    let mut k = META_DESTROY.to_vec();
    k.extend_from_slice(&fid.to_be_bytes());
    k.extend_from_slice(&layout_gen.to_be_bytes());
    k
}

pub(crate) fn encode_destroy(objects: &[OstObject]) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(1 + 12 * objects.len()));
    w.u8(DESTROY_FORMAT);
    for o in objects {
        w.u32(o.ost_idx);
        w.u64(o.oid);
    }
    w.0
}

/// The record a `destroy/` key and value make.
pub(crate) fn decode_destroy(key: &[u8], value: &[u8]) -> Result<DestroyRecord, NsError> {
    let bad = |why: &str| NsError::Corrupt(format!("destroy record: {why}"));
    let rest = key
        .strip_prefix(META_DESTROY)
        .ok_or_else(|| bad("not a destroy key"))?;
    let (fid, gen) = match (
        rest.get(..16).and_then(|b| <[u8; 16]>::try_from(b).ok()),
        rest.get(16..).and_then(|b| <[u8; 4]>::try_from(b).ok()),
    ) {
        (Some(f), Some(g)) => (
            Fid::from_be_bytes(&f).ok_or_else(|| bad("bad fid"))?,
            u32::from_be_bytes(g),
        ),
        _ => return Err(bad("key length")),
    };
    let (format, body) = value.split_first().ok_or_else(|| bad("empty value"))?;
    if *format != DESTROY_FORMAT {
        return Err(bad("unknown format"));
    }
    if body.len() % 12 != 0 {
        return Err(bad("value length"));
    }
    let objects = body
        .chunks_exact(12)
        .map(|c| {
            let (ost, oid) = c.split_at(4);
            match (<[u8; 4]>::try_from(ost), <[u8; 8]>::try_from(oid)) {
                (Ok(ost), Ok(oid)) => Ok(OstObject {
                    ost_idx: u32::from_le_bytes(ost),
                    oid: u64::from_le_bytes(oid),
                    seq: 0,
                }),
                _ => Err(bad("object")),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(DestroyRecord {
        fid,
        layout_gen: gen,
        objects,
    })
}

pub(crate) fn client_key(client: &[u8]) -> Vec<u8> {
    let mut k = META_CLIENT.to_vec();
    k.extend_from_slice(client);
    k
}

/// The client uuid of a `rcvd/` key, if it is one.
pub(crate) fn rcvd_client(key: &[u8]) -> Option<&[u8]> {
    let rest = key.strip_prefix(META_RCVD)?;
    let uuid_len = rest.len().checked_sub(1 + 8)?;
    let (uuid, tail) = rest.split_at(uuid_len);
    (tail.first() == Some(&0)).then_some(uuid)
}

pub(crate) fn rcvd_prefix(client: &[u8]) -> Vec<u8> {
    let mut k = META_RCVD.to_vec();
    k.extend_from_slice(client);
    k.push(0);
    k
}

pub(crate) fn rcvd_key(client: &[u8], xid: u64) -> Vec<u8> {
    let mut k = rcvd_prefix(client);
    k.extend_from_slice(&xid.to_be_bytes());
    k
}

pub(crate) fn ost_last_oid_key(ost_idx: u32) -> Vec<u8> {
    let mut k = META_OST_LAST_OID.to_vec();
    k.extend_from_slice(&ost_idx.to_be_bytes());
    k
}

pub(crate) const FORMAT_VERSION: u32 = 1;
const INODE_FORMAT: u8 = 1;
const LAYOUT_FORMAT: u8 = 1;

/// File type bits of `st_mode`. These are Linux's values, which are also Lustre's on the
/// wire; the disk format must not depend on the host's libc.
pub(crate) mod mode {
    pub const S_IFMT: u32 = 0o170_000;
    pub const S_IFSOCK: u32 = 0o140_000;
    pub const S_IFLNK: u32 = 0o120_000;
    pub const S_IFREG: u32 = 0o100_000;
    pub const S_IFBLK: u32 = 0o060_000;
    pub const S_IFDIR: u32 = 0o040_000;
    pub const S_IFCHR: u32 = 0o020_000;
    pub const S_IFIFO: u32 = 0o010_000;
    /// Permission, setuid, setgid and sticky bits.
    pub const S_IPERM: u32 = 0o7777;
    pub const S_ISGID: u32 = 0o2000;
    /// The read, write and execute bits of owner, group and other.
    pub const S_IRWXUGO: u32 = 0o777;
}

/// No FID: the `..` of an inode that is not a directory.
pub(crate) const NO_FID: Fid = Fid {
    seq: 0,
    oid: 0,
    ver: 0,
};

/// Readdir cookies. Hashes, and so cookies, are kept to 63 bits so that a cookie is a
/// non-negative `off_t`; 0 and 1 are never a hash (0 means "from the start").
pub(crate) const HASH_MIN: u64 = 2;
/// The cookie after the last entry of a directory. No name hashes to it.
pub const COOKIE_EOF: u64 = i64::MAX as u64;

/// The stable 64-bit hash that orders directory entries: FNV-1a, then the MurmurHash3
/// finalizer to spread the bits, cut to 63 bits and kept inside `[HASH_MIN, COOKIE_EOF)`.
/// It is part of the disk format: never change it.
pub(crate) fn name_hash(name: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    (h >> 1).clamp(HASH_MIN, COOKIE_EOF - 1)
}

/// One inode as stored: its attributes plus what only the namespace needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Inode {
    pub attr: Attr,
    /// A directory's parent (its `..`); [`NO_FID`] for other types.
    pub parent: Fid,
    /// A directory's number of entries, so that rmdir needs no scan.
    pub entries: u64,
    /// The number of extended attributes, so that destroying the inode can check that it
    /// found them all.
    pub xattr_count: u32,
    /// A symlink's target.
    pub symlink: Option<Vec<u8>>,
}

impl Inode {
    pub fn is_dir(&self) -> bool {
        self.attr.mode & mode::S_IFMT == mode::S_IFDIR
    }

    pub fn file_type(&self) -> u32 {
        self.attr.mode & mode::S_IFMT
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn time(&mut self, t: Timespec) {
        self.0.extend_from_slice(&t.sec.to_le_bytes());
        self.u32(t.nsec);
    }
    fn fid(&mut self, f: Fid) {
        self.0.extend_from_slice(&f.to_be_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
}

/// A cursor over a stored value that reports truncation as corruption.
struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, what }
    }

    fn corrupt(&self, why: &str) -> NsError {
        NsError::Corrupt(format!("{}: {why}", self.what))
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], NsError> {
        let (head, rest) = self
            .buf
            .split_at_checked(N)
            .ok_or_else(|| self.corrupt("truncated"))?;
        self.buf = rest;
        head.try_into().map_err(|_| self.corrupt("truncated"))
    }
    fn u8(&mut self) -> Result<u8, NsError> {
        Ok(self.take::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, NsError> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, NsError> {
        Ok(u64::from_le_bytes(self.take()?))
    }
    fn time(&mut self) -> Result<Timespec, NsError> {
        let sec = i64::from_le_bytes(self.take()?);
        let nsec = self.u32()?;
        if nsec >= 1_000_000_000 {
            return Err(self.corrupt("nanoseconds out of range"));
        }
        Ok(Timespec { sec, nsec })
    }
    fn fid(&mut self) -> Result<Fid, NsError> {
        let b: [u8; 16] = self.take()?;
        Fid::from_be_bytes(&b).ok_or_else(|| self.corrupt("bad fid"))
    }
    fn bytes(&mut self, len: usize) -> Result<&'a [u8], NsError> {
        let (head, rest) = self
            .buf
            .split_at_checked(len)
            .ok_or_else(|| self.corrupt("truncated"))?;
        self.buf = rest;
        Ok(head)
    }
    fn finish(self) -> Result<(), NsError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.corrupt("trailing bytes"))
        }
    }
}

pub(crate) fn fid_key(fid: Fid) -> [u8; 16] {
    fid.to_be_bytes()
}

pub(crate) fn encode_inode(inode: &Inode) -> Vec<u8> {
    let a = &inode.attr;
    let symlink = inode.symlink.as_deref().unwrap_or_default();
    let mut w = Writer(Vec::with_capacity(128 + symlink.len()));
    w.u8(INODE_FORMAT);
    w.u32(a.mode);
    w.u32(a.nlink);
    w.u32(a.uid);
    w.u32(a.gid);
    w.u32(a.rdev);
    w.u64(a.size);
    w.u64(a.blocks);
    w.time(a.atime);
    w.time(a.mtime);
    w.time(a.ctime);
    w.time(a.btime);
    w.u32(a.layout_gen);
    w.u32(a.hsm_state);
    w.u32(a.flags);
    w.fid(inode.parent);
    w.u64(inode.entries);
    w.u32(inode.xattr_count);
    // A symlink target is at most PATH_MAX bytes (checked on create), so it fits a u32.
    w.u32(u32::try_from(symlink.len()).expect("symlink target length checked on create"));
    w.bytes(symlink);
    w.0
}

pub(crate) fn decode_inode(fid: Fid, value: &[u8]) -> Result<Inode, NsError> {
    let mut r = Reader::new(value, "inode");
    let format = r.u8()?;
    if format != INODE_FORMAT {
        return Err(NsError::Corrupt(format!(
            "inode {fid}: unknown format {format}"
        )));
    }
    let attr = Attr {
        fid,
        mode: r.u32()?,
        nlink: r.u32()?,
        uid: r.u32()?,
        gid: r.u32()?,
        rdev: r.u32()?,
        size: r.u64()?,
        blocks: r.u64()?,
        atime: r.time()?,
        mtime: r.time()?,
        ctime: r.time()?,
        btime: r.time()?,
        layout_gen: r.u32()?,
        hsm_state: r.u32()?,
        flags: r.u32()?,
    };
    let parent = r.fid()?;
    let entries = r.u64()?;
    let xattr_count = r.u32()?;
    let len = usize::try_from(r.u32()?).map_err(|_| r.corrupt("symlink length"))?;
    if len > PATH_MAX_BYTES {
        return Err(r.corrupt("symlink target too long"));
    }
    let target = r.bytes(len)?.to_vec();
    r.finish()?;
    let is_link = attr.mode & mode::S_IFMT == mode::S_IFLNK;
    let symlink = match (is_link, target.is_empty()) {
        (true, false) => Some(target),
        (false, true) => None,
        (true, true) => return Err(NsError::Corrupt(format!("symlink {fid} has no target"))),
        (false, false) => {
            return Err(NsError::Corrupt(format!(
                "inode {fid} is not a symlink but has a target"
            )))
        }
    };
    Ok(Inode {
        attr,
        parent,
        entries,
        xattr_count,
        symlink,
    })
}

/// The key prefix of every entry of directory `parent`.
pub(crate) fn dirent_prefix(parent: Fid) -> [u8; 16] {
    parent.to_be_bytes()
}

/// The key of the entries of `parent` from `hash` on.
pub(crate) fn dirent_start(parent: Fid, hash: u64) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..16].copy_from_slice(&parent.to_be_bytes());
    k[16..].copy_from_slice(&hash.to_be_bytes());
    k
}

pub(crate) fn dirent_key(parent: Fid, hash: u64, name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(24 + name.len());
    k.extend_from_slice(&dirent_start(parent, hash));
    k.extend_from_slice(name);
    k
}

/// Splits a dirent key into (hash, name), after the 16-byte parent.
pub(crate) fn decode_dirent_key(key: &[u8]) -> Result<(u64, &[u8]), NsError> {
    let corrupt = || NsError::Corrupt("dirent key: truncated".into());
    let rest = key.get(16..).ok_or_else(corrupt)?;
    let (hash, name) = rest.split_first_chunk::<8>().ok_or_else(corrupt)?;
    if name.is_empty() {
        return Err(NsError::Corrupt("dirent key: empty name".into()));
    }
    Ok((u64::from_be_bytes(*hash), name))
}

pub(crate) fn encode_dirent(fid: Fid, file_type: u32) -> [u8; 20] {
    let mut v = [0u8; 20];
    v[..16].copy_from_slice(&fid.to_be_bytes());
    v[16..].copy_from_slice(&file_type.to_le_bytes());
    v
}

/// Decodes a dirent value into (child fid, file type).
pub(crate) fn decode_dirent(value: &[u8]) -> Result<(Fid, u32), NsError> {
    let mut r = Reader::new(value, "dirent");
    let fid = r.fid()?;
    let file_type = r.u32()?;
    r.finish()?;
    Ok((fid, file_type))
}

pub(crate) fn xattr_key(fid: Fid, name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(16 + name.len());
    k.extend_from_slice(&fid.to_be_bytes());
    k.extend_from_slice(name);
    k
}

pub(crate) fn encode_layout(layout: &Layout) -> Vec<u8> {
    let body = sheen_wire::encode(layout);
    let mut v = Vec::with_capacity(1 + body.len());
    v.push(LAYOUT_FORMAT);
    v.extend_from_slice(&body);
    v
}

pub(crate) fn decode_layout(fid: Fid, value: &[u8]) -> Result<Layout, NsError> {
    match value.split_first() {
        Some((&LAYOUT_FORMAT, body)) => sheen_wire::decode::<Layout>(body)
            .map_err(|e| NsError::Corrupt(format!("layout of {fid}: {e}"))),
        Some((f, _)) => Err(NsError::Corrupt(format!(
            "layout of {fid}: unknown format {f}"
        ))),
        None => Err(NsError::Corrupt(format!("layout of {fid}: empty"))),
    }
}

pub(crate) fn decode_u64(what: &'static str, value: &[u8]) -> Result<u64, NsError> {
    let mut r = Reader::new(value, what);
    let v = r.u64()?;
    r.finish()?;
    Ok(v)
}

pub(crate) fn decode_u32(what: &'static str, value: &[u8]) -> Result<u32, NsError> {
    let mut r = Reader::new(value, what);
    let v = r.u32()?;
    r.finish()?;
    Ok(v)
}

pub(crate) fn encode_next_fid(fid: Fid) -> [u8; 12] {
    let mut v = [0u8; 12];
    v[..8].copy_from_slice(&fid.seq.to_le_bytes());
    v[8..].copy_from_slice(&fid.oid.to_le_bytes());
    v
}

pub(crate) fn decode_next_fid(value: &[u8]) -> Result<Fid, NsError> {
    let mut r = Reader::new(value, "next fid");
    let seq = r.u64()?;
    let oid = r.u32()?;
    r.finish()?;
    Ok(Fid { seq, oid, ver: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sheen_wire::{pattern, StripeLayout};

    fn inode(mode: u32, symlink: Option<&[u8]>) -> Inode {
        let t = Timespec {
            sec: -5,
            nsec: 999_999_999,
        };
        Inode {
            attr: Attr {
                fid: Fid {
                    seq: Fid::FIRST_NORMAL_SEQ,
                    oid: 7,
                    ver: 0,
                },
                mode,
                nlink: 3,
                uid: 1000,
                gid: 100,
                rdev: 0x0801,
                size: u64::MAX,
                blocks: 17,
                atime: t,
                mtime: Timespec { sec: 1, nsec: 2 },
                ctime: Timespec { sec: 3, nsec: 4 },
                btime: Timespec { sec: 5, nsec: 6 },
                layout_gen: 9,
                hsm_state: 0x8,
                flags: 0x10,
            },
            parent: Fid::ROOT,
            entries: 42,
            xattr_count: 2,
            symlink: symlink.map(<[u8]>::to_vec),
        }
    }

    #[test]
    fn inode_round_trip() {
        for i in [
            inode(mode::S_IFREG | 0o644, None),
            inode(mode::S_IFLNK | 0o777, Some(b"x/y")),
        ] {
            let v = encode_inode(&i);
            assert_eq!(decode_inode(i.attr.fid, &v).unwrap(), i);
        }
    }

    #[test]
    fn destroy_records_round_trip_and_bad_ones_are_corrupt() {
        let objects = vec![
            OstObject {
                ost_idx: 3,
                oid: u64::MAX - 1,
                seq: 0,
            },
            OstObject {
                ost_idx: 0,
                oid: 7,
                seq: 0,
            },
        ];
        let fid = Fid {
            seq: Fid::FIRST_NORMAL_SEQ,
            oid: 9,
            ver: 0,
        };
        let (key, value) = (destroy_key(fid, 4), encode_destroy(&objects));
        let record = decode_destroy(&key, &value).unwrap();
        assert_eq!(
            (record.fid, record.layout_gen, record.objects),
            (fid, 4, objects)
        );
        for cut in 0..key.len() {
            assert!(matches!(
                decode_destroy(&key[..cut], &value),
                Err(NsError::Corrupt(_))
            ));
        }
        for cut in (0..value.len()).filter(|c| c % 12 != 1) {
            assert!(matches!(
                decode_destroy(&key, &value[..cut]),
                Err(NsError::Corrupt(_))
            ));
        }
        let mut long = key.clone();
        long.push(0);
        assert!(matches!(
            decode_destroy(&long, &value),
            Err(NsError::Corrupt(_))
        ));
        let mut other_format = value.clone();
        other_format[0] = 9;
        assert!(matches!(
            decode_destroy(&key, &other_format),
            Err(NsError::Corrupt(_))
        ));
    }

    #[test]
    fn bad_inodes_are_corrupt_not_panics() {
        let good = encode_inode(&inode(mode::S_IFLNK | 0o777, Some(b"target")));
        let fid = Fid::ROOT;
        for cut in 0..good.len() {
            assert!(matches!(
                decode_inode(fid, &good[..cut]),
                Err(NsError::Corrupt(_))
            ));
        }
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(decode_inode(fid, &long), Err(NsError::Corrupt(_))));
        let mut bad_format = good.clone();
        bad_format[0] = 99;
        assert!(matches!(
            decode_inode(fid, &bad_format),
            Err(NsError::Corrupt(_))
        ));
        // A regular file with a symlink target is inconsistent.
        let mut i = inode(mode::S_IFREG, None);
        i.symlink = Some(b"t".to_vec());
        assert!(matches!(
            decode_inode(fid, &encode_inode(&i)),
            Err(NsError::Corrupt(_))
        ));
    }

    #[test]
    fn dirent_round_trip_and_order() {
        let p = Fid::ROOT;
        let k = dirent_key(p, 0x1234, b"name");
        assert_eq!(decode_dirent_key(&k).unwrap(), (0x1234, &b"name"[..]));
        assert!(decode_dirent_key(&k[..20]).is_err());
        assert!(decode_dirent_key(&k[..24]).is_err());
        // Keys sort by parent, then hash, then name.
        assert!(dirent_key(p, 0x1234, b"zz") < dirent_key(p, 0x1235, b"a"));
        assert!(dirent_key(p, 0xff, b"a") < dirent_key(p, 0x100, b"a"));
        let v = encode_dirent(Fid::ROOT, mode::S_IFDIR);
        assert_eq!(decode_dirent(&v).unwrap(), (Fid::ROOT, mode::S_IFDIR));
        assert!(decode_dirent(&v[..19]).is_err());
    }

    #[test]
    fn layout_round_trip() {
        let l = Layout::plain(StripeLayout {
            pattern: pattern::RAID0,
            stripe_size: 1 << 20,
            stripe_count: 1,
            stripe_offset: 0,
            pool: String::new(),
            objects: vec![],
        });
        let v = encode_layout(&l);
        assert_eq!(decode_layout(Fid::ROOT, &v).unwrap(), l);
        // Truncations are errors or (rkyv finding another valid root) other layouts,
        // never panics.
        for cut in 0..v.len() {
            let _ = decode_layout(Fid::ROOT, &v[..cut]);
        }
        assert!(decode_layout(Fid::ROOT, &v[..v.len() / 2]).is_err());
        assert!(decode_layout(Fid::ROOT, &[]).is_err());
        assert!(decode_layout(Fid::ROOT, &[2, 0, 0, 0]).is_err());
    }

    #[test]
    fn hash_is_stable_and_in_range() {
        // Part of the disk format: these values must never change.
        let golden: [(&[u8], u64); 3] = [
            (b"a", 0x4151_54ac_54df_672d),
            (b"file0001", 0x64ab_8a75_6be0_203c),
            (&[0xff; 255], 0x0e47_c525_b3c0_5934),
        ];
        for (name, h) in golden {
            assert_eq!(name_hash(name), h);
        }
        let mut seen = std::collections::HashSet::new();
        for i in 0..100_000u32 {
            let h = name_hash(format!("f{i}").as_bytes());
            assert!((HASH_MIN..COOKIE_EOF).contains(&h));
            assert!(seen.insert(h));
        }
    }

    #[test]
    fn meta_values() {
        let f = Fid {
            seq: Fid::FIRST_NORMAL_SEQ + 3,
            oid: 99,
            ver: 0,
        };
        assert_eq!(decode_next_fid(&encode_next_fid(f)).unwrap(), f);
        assert!(decode_next_fid(&[0; 11]).is_err());
        assert_eq!(decode_u64("x", &7u64.to_le_bytes()).unwrap(), 7);
        assert!(decode_u64("x", &[0; 9]).is_err());
        assert_eq!(decode_u32("x", &7u32.to_le_bytes()).unwrap(), 7);
    }
}
