//! POSIX ACLs [posix_acl.c]: the value of `system.posix_acl_access` and
//! `system.posix_acl_default` as Linux stores it in an xattr, and what Linux does with one:
//! keep the mode's permission bits in step with an access ACL, rewrite the ACL on a chmod,
//! and derive a new inode's ACLs and mode from its directory's default ACL.
//!
//! The kernel evaluates ACLs in its permission checks (the FUSE client asks for
//! `FUSE_POSIX_ACL`); it leaves these updates to the filesystem, which here means the MDT's
//! namespace, in the same transaction as the change that calls for them.
//!
//! The xattr value (`posix_acl_xattr.h`) is a little-endian header, version 2, then one
//! 8-byte entry per ACL entry: tag (u16), permissions (u16), user or group id (u32; -1 for
//! the entries without one), sorted by tag and then id.

use crate::codec::mode;
use crate::NsError;

/// The access ACL xattr: checked by the kernel on every permission check.
pub const ACCESS: &[u8] = b"system.posix_acl_access";
/// A directory's default ACL xattr: inherited by what is created in it.
pub const DEFAULT: &[u8] = b"system.posix_acl_default";

/// `POSIX_ACL_XATTR_VERSION`.
const VERSION: u32 = 2;
const HEADER_BYTES: usize = 4;
const ENTRY_BYTES: usize = 8;
/// The id of the entries that name no user or group (`ACL_UNDEFINED_ID`).
const UNDEFINED_ID: u32 = u32::MAX;

/// Entry tags (`ACL_USER_OBJ` …), in the order a valid ACL lists them.
pub mod tag {
    pub const USER_OBJ: u16 = 0x01;
    pub const USER: u16 = 0x02;
    pub const GROUP_OBJ: u16 = 0x04;
    pub const GROUP: u16 = 0x08;
    pub const MASK: u16 = 0x10;
    pub const OTHER: u16 = 0x20;
}

/// The read, write and execute bits of an entry (`ACL_READ | ACL_WRITE | ACL_EXECUTE`).
const PERM_BITS: u16 = 0o7;

/// One ACL entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub tag: u16,
    pub perm: u16,
    pub id: u32,
}

/// A valid POSIX ACL: the entries in the order [`Acl::parse`] checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl {
    entries: Vec<Entry>,
}

impl Acl {
    /// Parses and validates an xattr value as `posix_acl_from_xattr` and `posix_acl_valid`
    /// do: version 2 (else `NotSupported`), whole entries, exactly one owner, owning group
    /// and other entry, named entries (with a valid id) only with a mask, everything in tag
    /// order; `Invalid` otherwise. The kernel checks ACLs so before it sends them, so only
    /// another client could send a bad one. Like the kernel, it leaves the order of the
    /// named entries among themselves to `setfacl`.
    pub fn parse(value: &[u8]) -> Result<Acl, NsError> {
        let (header, body) = value.split_at_checked(HEADER_BYTES).ok_or_else(bad_acl)?;
        let version = u32::from_le_bytes(header.try_into().map_err(|_| bad_acl())?);
        if version != VERSION {
            return Err(NsError::NotSupported("POSIX ACL version"));
        }
        if body.is_empty() || !body.len().is_multiple_of(ENTRY_BYTES) {
            return Err(bad_acl());
        }
        let mut entries = Vec::with_capacity(body.len() / ENTRY_BYTES);
        for e in body.chunks_exact(ENTRY_BYTES) {
            let (t, rest) = e.split_at(2);
            let (p, id) = rest.split_at(2);
            entries.push(Entry {
                tag: u16::from_le_bytes(t.try_into().map_err(|_| bad_acl())?),
                perm: u16::from_le_bytes(p.try_into().map_err(|_| bad_acl())?),
                id: u32::from_le_bytes(id.try_into().map_err(|_| bad_acl())?),
            });
        }
        let acl = Acl { entries };
        acl.validate()?;
        Ok(acl)
    }

    /// `posix_acl_valid`: the entries' order and which of them must be there.
    fn validate(&self) -> Result<(), NsError> {
        // The state machine of the kernel: each tag may follow only the ones before it.
        let mut state = tag::USER_OBJ;
        let mut needs_mask = false;
        for e in &self.entries {
            if e.perm & !PERM_BITS != 0 {
                return Err(bad_acl());
            }
            match e.tag {
                tag::USER_OBJ if state == tag::USER_OBJ => state = tag::USER,
                tag::USER | tag::GROUP if state == e.tag && e.id != UNDEFINED_ID => {
                    needs_mask = true;
                }
                tag::GROUP_OBJ if state == tag::USER => state = tag::GROUP,
                tag::MASK if state == tag::GROUP => state = tag::OTHER,
                tag::OTHER if state == tag::OTHER || (state == tag::GROUP && !needs_mask) => {
                    state = 0;
                }
                _ => return Err(bad_acl()),
            }
        }
        if state != 0 {
            return Err(bad_acl());
        }
        Ok(())
    }

    /// The xattr value of this ACL.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + ENTRY_BYTES * self.entries.len());
        out.extend_from_slice(&VERSION.to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.tag.to_le_bytes());
            out.extend_from_slice(&e.perm.to_le_bytes());
            let id = match e.tag {
                tag::USER | tag::GROUP => e.id,
                _ => UNDEFINED_ID,
            };
            out.extend_from_slice(&id.to_le_bytes());
        }
        out
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// `posix_acl_equiv_mode`: the permission bits this ACL gives `mode` (owner, then the
    /// mask or else the owning group, then other; the other bits of `mode` stay), and
    /// whether the ACL says more than those bits can (named entries or a mask).
    pub fn equiv_mode(&self, mode: u32) -> (u32, bool) {
        let mut bits = 0;
        let mut extended = false;
        for e in &self.entries {
            let perm = u32::from(e.perm & PERM_BITS);
            match e.tag {
                tag::USER_OBJ => bits |= perm << 6,
                tag::GROUP_OBJ => bits |= perm << 3,
                tag::OTHER => bits |= perm,
                tag::MASK => {
                    // Sorted after the owning group: the mask takes the group bits.
                    bits = (bits & !0o070) | (perm << 3);
                    extended = true;
                }
                _ => extended = true,
            }
        }
        ((mode & !mode::S_IRWXUGO) | bits, extended)
    }

    /// `posix_acl_chmod`: after a chmod to `mode`, the owner and other entries take its
    /// bits, and the mask (or, without one, the owning group) takes the group bits.
    pub fn chmod(&mut self, mode: u32) {
        let has_mask = self.entries.iter().any(|e| e.tag == tag::MASK);
        for e in &mut self.entries {
            match e.tag {
                tag::USER_OBJ => e.perm = perm_of(mode >> 6),
                tag::MASK => e.perm = perm_of(mode >> 3),
                tag::GROUP_OBJ if !has_mask => e.perm = perm_of(mode >> 3),
                tag::OTHER => e.perm = perm_of(mode),
                _ => {}
            }
        }
    }

    /// `posix_acl_create_masq`: a new inode's access ACL made from its directory's default
    /// ACL (this one) and the mode it is created with. The owner, other and mask (or owning
    /// group) entries lose what `mode` does not give, and `mode` loses what they do not.
    /// Returns the new mode and whether the ACL is needed (it says more than the mode).
    pub fn create_masq(&mut self, mode: u32) -> (u32, bool) {
        let mut bits = mode & mode::S_IRWXUGO;
        let mut extended = false;
        let has_mask = self.entries.iter().any(|e| e.tag == tag::MASK);
        for e in &mut self.entries {
            match e.tag {
                tag::USER_OBJ => {
                    e.perm &= perm_of(bits >> 6);
                    bits &= (u32::from(e.perm) << 6) | !0o700;
                }
                tag::USER | tag::GROUP => extended = true,
                tag::OTHER => {
                    e.perm &= perm_of(bits);
                    bits &= u32::from(e.perm) | !0o007;
                }
                tag::MASK => extended = true,
                _ => {}
            }
        }
        // The group class last, as the kernel: it is masked by the final group bits.
        for e in &mut self.entries {
            let group_class = match e.tag {
                tag::MASK => true,
                tag::GROUP_OBJ => !has_mask,
                _ => false,
            };
            if group_class {
                e.perm &= perm_of(bits >> 3);
                bits &= (u32::from(e.perm) << 3) | !0o070;
            }
        }
        ((mode & !mode::S_IRWXUGO) | bits, extended)
    }
}

fn bad_acl() -> NsError {
    NsError::Invalid("malformed POSIX ACL")
}

/// The rwx bits of the low three bits of `bits`.
fn perm_of(bits: u32) -> u16 {
    // Three bits always fit.
    u16::try_from(bits & 0o7).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::tag::*;
    use super::*;

    fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut out = VERSION.to_le_bytes().to_vec();
        for &(t, p, id) in entries {
            out.extend_from_slice(&t.to_le_bytes());
            out.extend_from_slice(&p.to_le_bytes());
            out.extend_from_slice(&id.to_le_bytes());
        }
        out
    }

    const U: u32 = UNDEFINED_ID;

    #[test]
    fn parses_valid_acls_and_round_trips() {
        let minimal = acl(&[(USER_OBJ, 6, U), (GROUP_OBJ, 4, U), (OTHER, 4, U)]);
        let a = Acl::parse(&minimal).unwrap();
        assert_eq!(a.to_bytes(), minimal);
        assert_eq!(
            a.equiv_mode(mode::S_IFREG | 0o777),
            (mode::S_IFREG | 0o644, false)
        );
        let full = acl(&[
            (USER_OBJ, 7, U),
            (USER, 5, 10),
            (USER, 0, 65534),
            (GROUP_OBJ, 5, U),
            (GROUP, 7, 3),
            (MASK, 6, U),
            (OTHER, 1, U),
        ]);
        let a = Acl::parse(&full).unwrap();
        assert_eq!(a.to_bytes(), full);
        // The group bits are the mask's.
        assert_eq!(a.equiv_mode(0o2000), (0o2761, true));
    }

    #[test]
    fn refuses_malformed_acls() {
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![2, 0, 0],
            acl(&[]),
            {
                let mut v = acl(&[(USER_OBJ, 6, U), (GROUP_OBJ, 4, U), (OTHER, 4, U)]);
                v.push(0);
                v
            },
            acl(&[(USER_OBJ, 6, U), (OTHER, 4, U)]),
            acl(&[(GROUP_OBJ, 4, U), (USER_OBJ, 6, U), (OTHER, 4, U)]),
            acl(&[
                (USER_OBJ, 6, U),
                (USER, 4, 5),
                (GROUP_OBJ, 4, U),
                (OTHER, 4, U),
            ]),
            acl(&[(USER_OBJ, 8, U), (GROUP_OBJ, 4, U), (OTHER, 4, U)]),
            acl(&[
                (USER_OBJ, 6, U),
                (USER, 4, U),
                (GROUP_OBJ, 4, U),
                (MASK, 4, U),
                (OTHER, 4, U),
            ]),
            acl(&[
                (USER_OBJ, 6, U),
                (GROUP_OBJ, 4, U),
                (OTHER, 4, U),
                (OTHER, 4, U),
            ]),
            acl(&[
                (USER_OBJ, 6, U),
                (GROUP_OBJ, 4, U),
                (0x40, 4, U),
                (OTHER, 4, U),
            ]),
        ];
        for (i, v) in cases.iter().enumerate() {
            assert!(Acl::parse(v).is_err(), "case {i} parsed");
        }
        // The kernel leaves the order of named entries to setfacl; so do we.
        let unsorted = acl(&[
            (USER_OBJ, 6, U),
            (USER, 4, 9),
            (USER, 4, 5),
            (GROUP_OBJ, 4, U),
            (MASK, 4, U),
            (OTHER, 4, U),
        ]);
        assert!(Acl::parse(&unsorted).is_ok());
        let mut v1 = acl(&[(USER_OBJ, 6, U), (GROUP_OBJ, 4, U), (OTHER, 4, U)]);
        v1[0] = 1;
        assert!(matches!(Acl::parse(&v1), Err(NsError::NotSupported(_))));
    }

    #[test]
    fn chmod_rewrites_owner_mask_and_other() {
        let mut a = Acl::parse(&acl(&[
            (USER_OBJ, 7, U),
            (USER, 7, 10),
            (GROUP_OBJ, 7, U),
            (MASK, 7, U),
            (OTHER, 7, U),
        ]))
        .unwrap();
        a.chmod(0o640);
        let perms: Vec<u16> = a.entries().iter().map(|e| e.perm).collect();
        assert_eq!(perms, vec![6, 7, 7, 4, 0]);
        // Without a mask the owning group takes the group bits.
        let mut a =
            Acl::parse(&acl(&[(USER_OBJ, 7, U), (GROUP_OBJ, 7, U), (OTHER, 7, U)])).unwrap();
        a.chmod(0o751);
        let perms: Vec<u16> = a.entries().iter().map(|e| e.perm).collect();
        assert_eq!(perms, vec![7, 5, 1]);
    }

    #[test]
    fn create_masq_as_linux() {
        // setfacl -d -m u::rwx,u:10:rwx,g::r-x,m::rwx,o::--- then creat(0666).
        let mut a = Acl::parse(&acl(&[
            (USER_OBJ, 7, U),
            (USER, 7, 10),
            (GROUP_OBJ, 5, U),
            (MASK, 7, U),
            (OTHER, 0, U),
        ]))
        .unwrap();
        let (m, extended) = a.create_masq(mode::S_IFREG | 0o666);
        assert_eq!((m, extended), (mode::S_IFREG | 0o660, true));
        let perms: Vec<u16> = a.entries().iter().map(|e| e.perm).collect();
        assert_eq!(perms, vec![6, 7, 5, 6, 0]);
        // A default ACL of the base entries only: the mode is masked, no ACL is needed.
        let mut a =
            Acl::parse(&acl(&[(USER_OBJ, 7, U), (GROUP_OBJ, 5, U), (OTHER, 5, U)])).unwrap();
        assert_eq!(
            a.create_masq(mode::S_IFDIR | 0o2777),
            (mode::S_IFDIR | 0o2755, false)
        );
    }
}
