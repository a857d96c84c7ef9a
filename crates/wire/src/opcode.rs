//! Opcodes, with Lustre's numbers where Lustre has the operation. Frozen: values are never
//! reused. Sheen's own operations take numbers from 2000 up.

/// An RPC operation code, as carried in the message header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Opcode {
    OstGetattr = 1,
    OstSetattr = 2,
    OstRead = 3,
    OstWrite = 4,
    OstCreate = 5,
    OstDestroy = 6,
    /// Lists the objects in an OST's object index.
    OstGetInfo = 7,
    OstConnect = 8,
    OstDisconnect = 9,
    OstPunch = 10,
    OstStatfs = 13,
    OstSync = 16,
    /// fallocate(2) on a range of an object: allocate ahead, or punch a hole.
    OstFallocate = 22,

    MdsGetattr = 33,
    /// Lookup of a name in a directory.
    MdsGetattrName = 34,
    MdsClose = 35,
    /// Namespace-changing operations; the body says which (create, unlink, rename, ...).
    MdsReint = 36,
    /// Directory listing with resumable cookies.
    MdsReadpage = 37,
    MdsConnect = 38,
    MdsDisconnect = 39,
    MdsGetRoot = 40,
    MdsStatfs = 41,
    MdsSync = 44,
    MdsGetxattr = 49,

    LdlmEnqueue = 101,
    LdlmConvert = 102,
    LdlmCancel = 103,
    /// Blocking callback, server to lock holder.
    LdlmBlCallback = 104,
    /// Completion callback, server to a waiter whose lock is granted.
    LdlmCpCallback = 105,
    /// Glimpse callback, server to a holder, for the size under its lock.
    LdlmGlCallback = 106,

    MgsConnect = 250,
    MgsDisconnect = 251,
    MgsTargetReg = 253,
    MgsConfigRead = 256,

    ObdPing = 400,

    /// A client opens a file: the MDS counts the open, so that a file unlinked while open
    /// lives on as an orphan until its last close (Lustre does this with an open intent).
    MdsOpen = 2000,
    /// Getattr or lookup that also asks for an inode-bits lock on the inode, so the client
    /// may cache what it got until called back (Lustre does this with a getattr intent in
    /// an LDLM enqueue).
    MdsGetattrLock = 2001,
    /// MDS_REINT with the client's own locks to cancel first (Lustre packs these early lock
    /// cancels into the same request).
    MdsReintCancel = 2002,
    /// Directory listing whose entries carry what a getattr of each returns, with inode-bits
    /// locks on some of them granted without waiting (Lustre's statahead and readdirplus do
    /// this with a getattr intent per entry).
    MdsReaddirPlus = 2003,
    /// A POSIX record lock (fcntl) or flock(2) lock operation on a file, kept by the MDS in
    /// memory (Lustre does this with LDLM_ENQUEUE of an LDLM_FLOCK lock).
    MdsFlock = 2004,
    /// Destroys several objects of one OST in one commit: what the MDS sends for removed
    /// files (Lustre sends one OST_DESTROY per object and lets the OST's journal batch them).
    OstDestroyBatch = 2005,
    /// MDS_GETATTR_LOCK for several names of one directory at once: what a client looks up
    /// ahead of an application that stats names in a sequence (Lustre's batched statahead).
    MdsGetattrBatch = 2006,
}

impl Opcode {
    pub fn from_u32(v: u32) -> Option<Opcode> {
        use Opcode::*;
        Some(match v {
            1 => OstGetattr,
            2 => OstSetattr,
            3 => OstRead,
            4 => OstWrite,
            5 => OstCreate,
            6 => OstDestroy,
            7 => OstGetInfo,
            8 => OstConnect,
            9 => OstDisconnect,
            10 => OstPunch,
            13 => OstStatfs,
            16 => OstSync,
            22 => OstFallocate,
            33 => MdsGetattr,
            34 => MdsGetattrName,
            35 => MdsClose,
            36 => MdsReint,
            37 => MdsReadpage,
            38 => MdsConnect,
            39 => MdsDisconnect,
            40 => MdsGetRoot,
            41 => MdsStatfs,
            44 => MdsSync,
            49 => MdsGetxattr,
            101 => LdlmEnqueue,
            102 => LdlmConvert,
            103 => LdlmCancel,
            104 => LdlmBlCallback,
            105 => LdlmCpCallback,
            106 => LdlmGlCallback,
            250 => MgsConnect,
            251 => MgsDisconnect,
            253 => MgsTargetReg,
            256 => MgsConfigRead,
            400 => ObdPing,
            2000 => MdsOpen,
            2001 => MdsGetattrLock,
            2002 => MdsReintCancel,
            2003 => MdsReaddirPlus,
            2004 => MdsFlock,
            2005 => OstDestroyBatch,
            2006 => MdsGetattrBatch,
            _ => return None,
        })
    }

    pub fn as_u32(self) -> u32 {
        self as u32
    }

    /// Lustre's lower-case name, as used in logs and spans.
    pub fn name(self) -> &'static str {
        use Opcode::*;
        match self {
            OstGetattr => "ost_getattr",
            OstSetattr => "ost_setattr",
            OstRead => "ost_read",
            OstWrite => "ost_write",
            OstCreate => "ost_create",
            OstDestroy => "ost_destroy",
            OstGetInfo => "ost_get_info",
            OstConnect => "ost_connect",
            OstDisconnect => "ost_disconnect",
            OstPunch => "ost_punch",
            OstStatfs => "ost_statfs",
            OstSync => "ost_sync",
            OstFallocate => "ost_fallocate",
            MdsGetattr => "mds_getattr",
            MdsGetattrName => "mds_getattr_name",
            MdsClose => "mds_close",
            MdsReint => "mds_reint",
            MdsReadpage => "mds_readpage",
            MdsConnect => "mds_connect",
            MdsDisconnect => "mds_disconnect",
            MdsGetRoot => "mds_get_root",
            MdsStatfs => "mds_statfs",
            MdsSync => "mds_sync",
            MdsGetxattr => "mds_getxattr",
            LdlmEnqueue => "ldlm_enqueue",
            LdlmConvert => "ldlm_convert",
            LdlmCancel => "ldlm_cancel",
            LdlmBlCallback => "ldlm_bl_callback",
            LdlmCpCallback => "ldlm_cp_callback",
            LdlmGlCallback => "ldlm_gl_callback",
            MgsConnect => "mgs_connect",
            MgsDisconnect => "mgs_disconnect",
            MgsTargetReg => "mgs_target_reg",
            MgsConfigRead => "mgs_config_read",
            ObdPing => "obd_ping",
            MdsOpen => "mds_open",
            MdsGetattrLock => "mds_getattr_lock",
            MdsReintCancel => "mds_reint_cancel",
            MdsReaddirPlus => "mds_readdir_plus",
            MdsFlock => "mds_flock",
            OstDestroyBatch => "ost_destroy_batch",
            MdsGetattrBatch => "mds_getattr_batch",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_frozen_and_round_trip() {
        assert_eq!(Opcode::OstRead.as_u32(), 3);
        assert_eq!(Opcode::MdsReint.as_u32(), 36);
        assert_eq!(Opcode::MgsConfigRead.as_u32(), 256);
        assert_eq!(Opcode::LdlmEnqueue.as_u32(), 101);
        assert_eq!(Opcode::LdlmGlCallback.as_u32(), 106);
        assert_eq!(Opcode::from_u32(104), Some(Opcode::LdlmBlCallback));
        assert_eq!(Opcode::LdlmCpCallback.name(), "ldlm_cp_callback");
        assert_eq!(Opcode::ObdPing.as_u32(), 400);
        assert_eq!(Opcode::from_u32(22), Some(Opcode::OstFallocate));
        assert_eq!(Opcode::OstFallocate.name(), "ost_fallocate");
        assert_eq!(Opcode::from_u32(2003), Some(Opcode::MdsReaddirPlus));
        assert_eq!(Opcode::from_u32(2004), Some(Opcode::MdsFlock));
        assert_eq!(Opcode::from_u32(2005), Some(Opcode::OstDestroyBatch));
        for v in 0..3000 {
            if let Some(op) = Opcode::from_u32(v) {
                assert_eq!(op.as_u32(), v);
            }
        }
        assert_eq!(Opcode::from_u32(11), None);
    }
}
