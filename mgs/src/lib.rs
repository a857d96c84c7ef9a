//! The management server [mgs]: holds the filesystem's configuration in sled (fsname,
//! default stripe settings, the registered targets and their NIDs), registers targets when
//! they start and serves the configuration to clients and servers.
//!
//! Architecture invariant: the MGS knows nothing of the namespace or of object data.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use sheen_rpc::{serve, Request, Response, Service, ServiceError};
use sheen_wire::limits::FSNAME_MAX_CHARS;
use sheen_wire::msg::{ConfigReadReq, FsConfig, TargetInfo, TargetRegReply, TargetRegReq};
use sheen_wire::{Errno, Nid, Opcode, TargetKind, WireDecode, WireEncode};
use tokio_util::sync::CancellationToken;
use tracing::info;

/// How the MGS is started.
#[derive(Clone, Debug)]
pub struct MgsConfig {
    pub fsname: String,
    pub data_dir: PathBuf,
    pub listen: Nid,
    pub default_stripe_count: u32,
    pub default_stripe_size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum MgsError {
    #[error("configuration store: {0}")]
    Db(#[from] sled::Error),
    #[error("stored configuration is corrupt: {0}")]
    Corrupt(String),
    #[error("invalid fsname {0:?}: 1 to 8 characters of [A-Za-z0-9_-]")]
    BadFsname(String),
    #[error("this MGS holds filesystem {stored:?}, not {asked:?}")]
    FsnameMismatch { stored: String, asked: String },
    #[error("transport: {0}")]
    Transport(#[from] sheen_transport::TransportError),
    #[error("blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

pub fn valid_fsname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= FSNAME_MAX_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The configuration store.
struct Store {
    db: sled::Db,
    config: sled::Tree,
}

const KEY_FS: &[u8] = b"fs";

impl Store {
    fn open(cfg: &MgsConfig) -> Result<Store, MgsError> {
        let db = sled::Config::new()
            .path(cfg.data_dir.join("config.sled"))
            .open()?;
        let config = db.open_tree("config")?;
        let store = Store { db, config };
        match store.load()? {
            Some(fs) if fs.fsname != cfg.fsname => {
                return Err(MgsError::FsnameMismatch {
                    stored: fs.fsname,
                    asked: cfg.fsname.clone(),
                })
            }
            Some(_) => {}
            None => {
                let fs = FsConfig {
                    fsname: cfg.fsname.clone(),
                    default_stripe_count: cfg.default_stripe_count,
                    default_stripe_size: cfg.default_stripe_size,
                    targets: Vec::new(),
                    generation: 1,
                };
                store.config.insert(KEY_FS, fs.to_wire().to_vec())?;
                store.db.flush()?;
                info!(fsname = %cfg.fsname, "created a new filesystem configuration");
            }
        }
        Ok(store)
    }

    fn load(&self) -> Result<Option<FsConfig>, MgsError> {
        match self.config.get(KEY_FS)? {
            None => Ok(None),
            Some(v) => FsConfig::from_wire(&v)
                .map(Some)
                .map_err(|e| MgsError::Corrupt(e.to_string())),
        }
    }

    /// Adds or updates a target; atomically (compare-and-swap on the one record).
    ///
    /// The target's NIDs are stored as given, replacing the previous list: a server lists
    /// the NID it listens on first and its failover NIDs (`--failnode`) after, so the list
    /// is in the order clients should try, and a server started on its failover NID puts
    /// that one first.
    fn register(&self, reg: &TargetRegReq) -> Result<TargetInfo, MgsError> {
        loop {
            let old = self.config.get(KEY_FS)?;
            let mut fs = match &old {
                Some(v) => FsConfig::from_wire(v).map_err(|e| MgsError::Corrupt(e.to_string()))?,
                None => return Err(MgsError::Corrupt("no filesystem record".into())),
            };
            let name = reg.kind.target_name(&fs.fsname, reg.index);
            let info = TargetInfo {
                name: name.clone(),
                kind: reg.kind,
                index: reg.index,
                nids: reg.nids.clone(),
            };
            match fs.targets.iter_mut().find(|t| t.name == name) {
                Some(t) if *t == info => return Ok(info),
                Some(t) => *t = info.clone(),
                None => fs.targets.push(info.clone()),
            }
            fs.targets.sort_by_key(|t| (t.kind as u8, t.index));
            fs.generation += 1;
            let new = fs.to_wire().to_vec();
            if self
                .config
                .compare_and_swap(KEY_FS, old, Some(new))?
                .is_ok()
            {
                self.db.flush()?;
                return Ok(info);
            }
        }
    }
}

struct Mgs {
    store: Arc<Store>,
    fsname: String,
    instance: u64,
    registrations: AtomicU64,
}

#[async_trait]
impl Service for Mgs {
    fn name(&self) -> String {
        "MGS".into()
    }

    fn instance(&self) -> u64 {
        self.instance
    }

    async fn handle(&self, req: Request) -> Result<Response, ServiceError> {
        match req.opcode {
            Opcode::MgsConfigRead => {
                let r: ConfigReadReq = req.decode()?;
                if r.fsname != self.fsname {
                    return Err(ServiceError::new(
                        Errno::ENOENT,
                        format!(
                            "no filesystem {:?} here (this MGS serves {:?})",
                            r.fsname, self.fsname
                        ),
                    ));
                }
                let store = Arc::clone(&self.store);
                let fs = tokio::task::spawn_blocking(move || store.load())
                    .await
                    .map_err(|e| ServiceError::new(Errno::EIO, e.to_string()))?
                    .map_err(|e| ServiceError::new(Errno::EIO, e.to_string()))?
                    .ok_or_else(|| ServiceError::new(Errno::EIO, "no filesystem record"))?;
                Ok(Response::new(&fs))
            }
            Opcode::MgsTargetReg => {
                let r: TargetRegReq = req.decode()?;
                if r.fsname != self.fsname {
                    return Err(ServiceError::new(
                        Errno::EINVAL,
                        format!(
                            "target of filesystem {:?} cannot join {:?}",
                            r.fsname, self.fsname
                        ),
                    ));
                }
                if r.kind == TargetKind::Mgs || r.nids.is_empty() {
                    return Err(ServiceError::new(
                        Errno::EINVAL,
                        "a target registers as MDT or OST with its NIDs",
                    ));
                }
                for nid in &r.nids {
                    Nid::parse(nid)
                        .map_err(|e| ServiceError::new(Errno::EINVAL, format!("bad NID: {e}")))?;
                }
                let store = Arc::clone(&self.store);
                let info = tokio::task::spawn_blocking(move || store.register(&r))
                    .await
                    .map_err(|e| ServiceError::new(Errno::EIO, e.to_string()))?
                    .map_err(|e| ServiceError::new(Errno::EIO, e.to_string()))?;
                self.registrations.fetch_add(1, Ordering::Relaxed);
                info!(target = %info.name, nids = ?info.nids, "target registered");
                Ok(Response::new(&TargetRegReply { name: info.name }))
            }
            other => Err(ServiceError::new(
                Errno::EOPNOTSUPP,
                format!("{} is not an MGS operation", other.name()),
            )),
        }
    }
}

/// Opens the configuration store, listens and serves until `shutdown`.
pub async fn run(cfg: MgsConfig, shutdown: CancellationToken) -> Result<(), MgsError> {
    if !valid_fsname(&cfg.fsname) {
        return Err(MgsError::BadFsname(cfg.fsname));
    }
    let store = {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || Store::open(&cfg)).await??
    };
    let service = Arc::new(Mgs {
        store: Arc::new(store),
        fsname: cfg.fsname.clone(),
        instance: sheen_daemon::instance_id(),
        registrations: AtomicU64::new(0),
    });
    let transport = sheen_transport::for_nid(&cfg.listen)?;
    let listener = transport.listen(&cfg.listen).await?;
    info!(nid = %listener.local_nid(), fsname = %cfg.fsname, "MGS ready");
    serve(listener, service, shutdown).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsnames() {
        assert!(valid_fsname("sheen"));
        assert!(!valid_fsname("toolongname"));
        assert!(!valid_fsname(""));
        assert!(!valid_fsname("a/b"));
    }

    #[test]
    fn registration_is_stored_and_updated() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = MgsConfig {
            fsname: "sheen".into(),
            data_dir: dir.path().to_path_buf(),
            listen: Nid::parse("127.0.0.1:0@tcp").unwrap(),
            default_stripe_count: 1,
            default_stripe_size: 1 << 20,
        };
        let store = Store::open(&cfg).unwrap();
        let reg = TargetRegReq {
            fsname: "sheen".into(),
            kind: TargetKind::Ost,
            index: 10,
            nids: vec!["127.0.0.1:7002@tcp".into()],
        };
        assert_eq!(store.register(&reg).unwrap().name, "sheen-OST000a");
        let reg2 = TargetRegReq {
            nids: vec!["127.0.0.1:7003@tcp".into()],
            ..reg
        };
        store.register(&reg2).unwrap();
        drop(store);
        let store = Store::open(&cfg).unwrap();
        let fs = store.load().unwrap().unwrap();
        assert_eq!(fs.targets.len(), 1);
        assert_eq!(fs.targets[0].nids, vec!["127.0.0.1:7003@tcp".to_string()]);
        // A server started on its failover NID registers both, that one first: stored as is.
        let failover = TargetRegReq {
            nids: vec!["127.0.0.1:7004@tcp".into(), "127.0.0.1:7003@tcp".into()],
            ..reg2
        };
        store.register(&failover).unwrap();
        let fs = store.load().unwrap().unwrap();
        assert_eq!(fs.targets[0].nids, failover.nids);
        drop(store);
        let other = MgsConfig {
            fsname: "other".into(),
            ..cfg
        };
        assert!(matches!(
            Store::open(&other),
            Err(MgsError::FsnameMismatch { .. })
        ));
    }
}
