//! The client against an in-process fake cluster: an MGS, an MDS and an OSS with two OSTs,
//! served over loopback TCP by `sheen_rpc::serve`, keeping everything in memory. Checks
//! mount, namespace calls, striped I/O with holes, truncate, statfs and the in-flight cap.

// The fakes are test code outside `#[test]` functions: a failed unwrap there fails the test.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sheen_client::{Client, ClientConfig, ClientError, MountSpec};
use sheen_layout::Geometry;
use sheen_rpc::{serve, Request, Response, Service, ServiceError};
use sheen_transport::Transport;
use sheen_wire::msg::*;
use sheen_wire::{Errno, Fid, Nid, Opcode, TargetKind};
use tokio_util::sync::CancellationToken;

const FSNAME: &str = "fake";
const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

struct Mgs {
    config: FsConfig,
}

#[async_trait]
impl Service for Mgs {
    fn name(&self) -> String {
        "MGS".into()
    }
    fn instance(&self) -> u64 {
        1
    }
    async fn handle(&self, req: Request) -> Result<Response, ServiceError> {
        match req.opcode {
            Opcode::MgsConfigRead => {
                let r: ConfigReadReq = req.decode()?;
                if r.fsname != self.config.fsname {
                    return Err(ServiceError::new(Errno::ENOENT, "no such filesystem"));
                }
                Ok(Response::new(&self.config))
            }
            _ => Err(Errno::EOPNOTSUPP.into()),
        }
    }
}

struct Inode {
    attr: Attr,
    layout: Option<Layout>,
    symlink: Option<Vec<u8>>,
    children: BTreeMap<Vec<u8>, Fid>,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

#[derive(Default)]
struct Mds {
    inodes: Mutex<HashMap<Fid, Inode>>,
    next_oid: AtomicUsize,
    next_obj: AtomicUsize,
}

fn attr(fid: Fid, mode: u32, creds: Creds) -> Attr {
    let now = Timespec::now();
    Attr {
        fid,
        mode,
        nlink: if mode & libc::S_IFMT == libc::S_IFDIR {
            2
        } else {
            1
        },
        uid: creds.uid,
        gid: creds.gid,
        rdev: 0,
        size: 0,
        blocks: 0,
        atime: now,
        mtime: now,
        ctime: now,
        btime: now,
        layout_gen: 0,
        hsm_state: 0,
        flags: 0,
    }
}

impl Mds {
    fn new() -> Mds {
        let mds = Mds::default();
        let root = Inode {
            attr: attr(Fid::ROOT, libc::S_IFDIR | 0o755, Creds::default()),
            layout: None,
            symlink: None,
            children: BTreeMap::new(),
            xattrs: BTreeMap::new(),
        };
        mds.inodes.lock().unwrap().insert(Fid::ROOT, root);
        mds
    }

    fn reply(inode: &Inode, want_symlink: bool) -> AttrReply {
        AttrReply {
            attr: inode.attr.clone(),
            layout: inode.layout.clone(),
            symlink: if want_symlink {
                inode.symlink.clone()
            } else {
                None
            },
        }
    }

    fn reint(&self, r: ReintReq) -> Result<ReintReply, ServiceError> {
        let mut inodes = self.inodes.lock().unwrap();
        let enoent = || ServiceError::from(Errno::ENOENT);
        match r {
            ReintReq::Create {
                parent,
                name,
                mode,
                creds,
                symlink,
                layout,
                ..
            } => {
                let p = inodes.get(&parent).ok_or_else(enoent)?;
                if p.children.contains_key(&name) {
                    return Err(Errno::EEXIST.into());
                }
                let oid = self.next_oid.fetch_add(1, Ordering::SeqCst) as u32 + 1;
                let fid = Fid {
                    seq: Fid::FIRST_NORMAL_SEQ,
                    oid,
                    ver: 0,
                };
                let layout = (mode & libc::S_IFMT == libc::S_IFREG).then(|| {
                    let template = layout.as_ref().and_then(|l| l.as_plain()).cloned();
                    let mut s =
                        sheen_layout::resolve_template(template.as_ref(), 2, 64 * KIB, 2).unwrap();
                    s.objects = (0..s.stripe_count)
                        .map(|i| OstObject {
                            ost_idx: i % 2,
                            oid: self.next_obj.fetch_add(1, Ordering::SeqCst) as u64 + 1,
                            seq: 0,
                        })
                        .collect();
                    Layout::plain(s)
                });
                let inode = Inode {
                    attr: attr(fid, mode, creds),
                    layout: layout.clone(),
                    symlink,
                    children: BTreeMap::new(),
                    xattrs: BTreeMap::new(),
                };
                let a = inode.attr.clone();
                inodes.insert(fid, inode);
                inodes
                    .get_mut(&parent)
                    .ok_or_else(enoent)?
                    .children
                    .insert(name, fid);
                Ok(ReintReply {
                    attr: Some(a),
                    layout,
                    ..Default::default()
                })
            }
            ReintReq::Setattr { fid, attr } => {
                let i = inodes.get_mut(&fid).ok_or_else(enoent)?;
                if let Some(size) = attr.size {
                    i.attr.size = size;
                }
                if let Some(mode) = attr.mode {
                    i.attr.mode = (i.attr.mode & libc::S_IFMT) | (mode & 0o7777);
                }
                if let Some(TimeSet::At(t)) = attr.mtime {
                    i.attr.mtime = t;
                }
                Ok(ReintReply {
                    attr: Some(i.attr.clone()),
                    layout: i.layout.clone(),
                    ..Default::default()
                })
            }
            ReintReq::Unlink { parent, name } | ReintReq::Rmdir { parent, name } => {
                let p = inodes.get_mut(&parent).ok_or_else(enoent)?;
                let fid = p.children.remove(&name).ok_or_else(enoent)?;
                inodes.remove(&fid);
                Ok(ReintReply {
                    attr: None,
                    layout: None,
                    ..Default::default()
                })
            }
            ReintReq::Setxattr {
                fid, name, value, ..
            } => {
                inodes
                    .get_mut(&fid)
                    .ok_or_else(enoent)?
                    .xattrs
                    .insert(name, value);
                Ok(ReintReply {
                    attr: None,
                    layout: None,
                    ..Default::default()
                })
            }
            _ => Err(Errno::EOPNOTSUPP.into()),
        }
    }
}

#[async_trait]
impl Service for Mds {
    fn name(&self) -> String {
        format!("{FSNAME}-MDT0000")
    }
    fn instance(&self) -> u64 {
        1
    }
    async fn handle(&self, req: Request) -> Result<Response, ServiceError> {
        match req.opcode {
            Opcode::MdsGetRoot => {
                let inodes = self.inodes.lock().unwrap();
                Ok(Response::new(&Mds::reply(&inodes[&Fid::ROOT], false)))
            }
            Opcode::MdsGetattr => {
                let r: GetattrReq = req.decode()?;
                let inodes = self.inodes.lock().unwrap();
                let i = inodes.get(&r.fid).ok_or(Errno::ENOENT)?;
                Ok(Response::new(&Mds::reply(i, r.want_symlink)))
            }
            Opcode::MdsGetattrName => {
                let r: LookupReq = req.decode()?;
                let inodes = self.inodes.lock().unwrap();
                let p = inodes.get(&r.parent).ok_or(Errno::ENOENT)?;
                let fid = p.children.get(&r.name).ok_or(Errno::ENOENT)?;
                Ok(Response::new(&Mds::reply(&inodes[fid], false)))
            }
            Opcode::MdsReint => Ok(Response::new(&self.reint(req.decode()?)?)),
            Opcode::MdsReadpage => {
                let r: ReaddirReq = req.decode()?;
                let inodes = self.inodes.lock().unwrap();
                let d = inodes.get(&r.fid).ok_or(Errno::ENOENT)?;
                let all: Vec<_> = d.children.iter().collect();
                let start = r.cookie as usize;
                let end = (start + r.max_entries as usize).min(all.len());
                let entries = all[start.min(end)..end]
                    .iter()
                    .enumerate()
                    .map(|(k, (name, fid))| DirEntry {
                        name: name.to_vec(),
                        fid: **fid,
                        file_type: inodes[*fid].attr.mode & libc::S_IFMT,
                        next_cookie: (start + k + 1) as u64,
                    })
                    .collect();
                Ok(Response::new(&ReaddirReply {
                    entries,
                    eof: end == all.len(),
                }))
            }
            Opcode::MdsGetxattr => {
                let inodes = self.inodes.lock().unwrap();
                match req.decode()? {
                    XattrReq::Get { fid, name } => {
                        let i = inodes.get(&fid).ok_or(Errno::ENOENT)?;
                        let value = i.xattrs.get(&name).ok_or(Errno::ENODATA)?.clone();
                        Ok(Response::new(&XattrReply { value }))
                    }
                    XattrReq::List { fid } => {
                        let i = inodes.get(&fid).ok_or(Errno::ENOENT)?;
                        let mut value = Vec::new();
                        for name in i.xattrs.keys() {
                            value.extend_from_slice(name);
                            value.push(0);
                        }
                        Ok(Response::new(&XattrReply { value }))
                    }
                }
            }
            Opcode::MdsStatfs => Ok(Response::new(&StatfsReply {
                bsize: 4096,
                files: 1000,
                ffree: 900,
                namelen: 255,
                ..Default::default()
            })),
            Opcode::MdsSync => Ok(Response::empty()),
            _ => Err(Errno::EOPNOTSUPP.into()),
        }
    }
}

#[derive(Default)]
struct Oss {
    objects: Mutex<HashMap<(u32, u64), Vec<u8>>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Each write waits this long, so that writes pile up and the cap shows.
    write_delay: Duration,
    next_lock: AtomicUsize,
}

#[async_trait]
impl Service for Oss {
    fn name(&self) -> String {
        "OSS".into()
    }
    fn instance(&self) -> u64 {
        1
    }
    async fn handle(&self, req: Request) -> Result<Response, ServiceError> {
        let ost = req.target_idx();
        match req.opcode {
            // One client: every lock is granted as asked, cancels are accepted.
            Opcode::LdlmEnqueue => {
                let r: EnqueueReq = req.decode()?;
                let cookie = self.next_lock.fetch_add(1, Ordering::SeqCst) as u64 + 1;
                Ok(Response::new(&EnqueueReply {
                    handle: sheen_wire::LockHandle { cookie },
                    desc: r.desc,
                    granted: true,
                    lvb: None,
                }))
            }
            Opcode::LdlmCancel => Ok(Response::empty()),
            Opcode::OstRead => {
                let r: OstReadReq = req.decode()?;
                let objects = self.objects.lock().unwrap();
                let obj = objects.get(&(ost, r.oid)).map(Vec::as_slice).unwrap_or(&[]);
                let start = (r.offset as usize).min(obj.len());
                let end = (r.offset as usize + r.len as usize).min(obj.len());
                let data = Bytes::copy_from_slice(&obj[start..end]);
                Ok(Response::empty().with_bulk(data))
            }
            Opcode::OstWrite => {
                let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                self.max_in_flight.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(self.write_delay).await;
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                let w: OstWriteReq = req.decode()?;
                let mut objects = self.objects.lock().unwrap();
                let obj = objects.entry((ost, w.oid)).or_default();
                let end = w.offset as usize + req.bulk.len();
                if obj.len() < end {
                    obj.resize(end, 0);
                }
                obj[w.offset as usize..end].copy_from_slice(&req.bulk);
                Ok(Response::new(&OstWriteReply {
                    size: obj.len() as u64,
                }))
            }
            Opcode::OstPunch => {
                let p: OstPunchReq = req.decode()?;
                let mut objects = self.objects.lock().unwrap();
                objects
                    .entry((ost, p.oid))
                    .or_default()
                    .resize(p.size as usize, 0);
                Ok(Response::empty())
            }
            Opcode::OstGetattr => {
                let r: ObjReq = req.decode()?;
                let objects = self.objects.lock().unwrap();
                let obj = objects.get(&(ost, r.oid)).ok_or(Errno::ENOENT)?;
                Ok(Response::new(&ObjAttr {
                    oid: r.oid,
                    size: obj.len() as u64,
                    allocated_bytes: obj.len() as u64,
                    mtime: Timespec::now(),
                }))
            }
            Opcode::OstStatfs => Ok(Response::new(&StatfsReply {
                bsize: 4096,
                blocks: 1000,
                bfree: 800,
                bavail: 700,
                files: 5,
                ffree: 5,
                namelen: 255,
            })),
            Opcode::OstSync => Ok(Response::empty()),
            _ => Err(Errno::EOPNOTSUPP.into()),
        }
    }
}

struct Cluster {
    spec: MountSpec,
    mds: Arc<Mds>,
    oss: Arc<Oss>,
    stop: CancellationToken,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn listen(service: Arc<dyn Service>, stop: &CancellationToken) -> Nid {
    let t = sheen_transport::TcpTransport::default();
    let listener = t
        .listen(&Nid::parse("127.0.0.1:0@tcp").unwrap())
        .await
        .unwrap();
    let nid = listener.local_nid();
    tokio::spawn(serve(listener, service, stop.clone()));
    nid
}

async fn start(write_delay: Duration) -> Cluster {
    let stop = CancellationToken::new();
    let mds = Arc::new(Mds::new());
    let oss = Arc::new(Oss {
        write_delay,
        ..Oss::default()
    });
    let mds_nid = listen(mds.clone(), &stop).await;
    let oss_nid = listen(oss.clone(), &stop).await;
    let target = |kind: TargetKind, index: u32, nid: Nid| TargetInfo {
        name: kind.target_name(FSNAME, index),
        kind,
        index,
        nids: vec![nid.to_string()],
    };
    let config = FsConfig {
        fsname: FSNAME.into(),
        default_stripe_count: 2,
        default_stripe_size: 64 * KIB,
        targets: vec![
            target(TargetKind::Mdt, 0, mds_nid),
            target(TargetKind::Ost, 0, oss_nid),
            target(TargetKind::Ost, 1, oss_nid),
        ],
        generation: 1,
    };
    let mgs_nid = listen(Arc::new(Mgs { config }), &stop).await;
    let spec = MountSpec::parse(&format!("{mgs_nid}:/{FSNAME}")).unwrap();
    Cluster {
        spec,
        mds,
        oss,
        stop,
    }
}

fn test_config() -> ClientConfig {
    ClientConfig {
        retry_for: Duration::from_millis(500),
        mgs_retry_for: Duration::from_millis(500),
        rpc_timeout: Duration::from_secs(10),
        ..ClientConfig::default()
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test]
async fn namespace_calls() {
    let cluster = start(Duration::ZERO).await;
    let client = Client::mount(&cluster.spec, test_config()).await.unwrap();
    assert_eq!(client.fs_config().fsname, FSNAME);
    let root = client.root().await.unwrap();
    assert_eq!(root.fid, Fid::ROOT);
    assert!(root.is_dir());

    let creds = Creds {
        uid: 5,
        gid: 6,
        umask: 0,
    };
    let dir = client.mkdir(Fid::ROOT, b"d", 0o755, creds).await.unwrap();
    assert!(dir.is_dir());
    assert_eq!((dir.uid, dir.gid), (5, 6));
    for i in 0..10 {
        let name = format!("f{i:02}");
        let (a, layout) = client
            .create(dir.fid, name.as_bytes(), 0o644, creds, None)
            .await
            .unwrap();
        assert!(a.is_reg());
        assert_eq!(layout.unwrap().as_plain().unwrap().objects.len(), 2);
    }
    let err = client
        .create(dir.fid, b"f03", 0o644, creds, None)
        .await
        .unwrap_err();
    assert_eq!(err.errno(), Errno::EEXIST);
    let err = client.lookup(dir.fid, b"nope").await.unwrap_err();
    assert_eq!(err.errno(), Errno::ENOENT);
    assert!(err.is_expected());

    // Readdir in pages of 3 resumes from each page's last cookie.
    let mut names = Vec::new();
    let mut cookie = 0;
    loop {
        let (entries, eof) = client.readdir(dir.fid, cookie, 3).await.unwrap();
        assert!(entries.len() <= 3);
        names.extend(
            entries
                .iter()
                .map(|e| String::from_utf8(e.name.clone()).unwrap()),
        );
        if let Some(last) = entries.last() {
            cookie = last.next_cookie;
        }
        if eof {
            break;
        }
    }
    let want: Vec<String> = (0..10).map(|i| format!("f{i:02}")).collect();
    assert_eq!(names, want);

    let link = client.symlink(dir.fid, b"l", b"f00", creds).await.unwrap();
    assert_eq!(client.readlink(link.fid).await.unwrap(), b"f00");
    assert_eq!(
        client.readlink(dir.fid).await.unwrap_err().errno(),
        Errno::EINVAL
    );

    client.setxattr(dir.fid, b"user.a", b"1", 0).await.unwrap();
    client.setxattr(dir.fid, b"user.b", b"22", 0).await.unwrap();
    assert_eq!(client.getxattr(dir.fid, b"user.b").await.unwrap(), b"22");
    assert_eq!(
        client.listxattr(dir.fid).await.unwrap(),
        b"user.a\0user.b\0"
    );
    let err = client.getxattr(dir.fid, b"user.zz").await.unwrap_err();
    assert_eq!(err.errno(), Errno::ENODATA);

    client.unlink(dir.fid, b"f00").await.unwrap();
    assert_eq!(
        client.lookup(dir.fid, b"f00").await.unwrap_err().errno(),
        Errno::ENOENT
    );
    let long = vec![b'x'; 300];
    assert_eq!(
        client.lookup(dir.fid, &long).await.unwrap_err().errno(),
        Errno::ENAMETOOLONG
    );

    let st = client.statfs().await.unwrap();
    assert_eq!(
        (st.bsize, st.blocks, st.bfree, st.bavail),
        (4096, 2000, 1600, 1400)
    );
    assert_eq!((st.files, st.ffree), (1000, 900));
    let per_target = client.target_statfs().await;
    assert_eq!(per_target.len(), 3);
    assert!(per_target.iter().all(|(_, r)| r.is_ok()));
    assert_eq!(per_target[0].0.kind, TargetKind::Mdt);
    client.unmount().await;
}

#[tokio::test]
async fn striped_io_truncate_and_holes() {
    let cluster = start(Duration::ZERO).await;
    let client = Client::mount(&cluster.spec, test_config()).await.unwrap();
    let (file, layout) = client
        .create(Fid::ROOT, b"data", 0o644, Creds::default(), None)
        .await
        .unwrap();
    let layout = layout.unwrap();
    let geom = Geometry::of(layout.as_plain().unwrap()).unwrap();
    assert_eq!(geom, Geometry::new(64 * KIB, 2).unwrap());

    // Write 3 MiB + a bit in uneven pieces, leaving a hole at [1 MiB, 1 MiB + 100 KiB).
    let size = 3 * MIB + 4321;
    let mut expect = vec![0u8; size as usize];
    let hole = (MIB, MIB + 100 * KIB);
    for (off, end, seed) in [
        (0, hole.0, 1u8),
        (hole.1, 2 * MIB + 7, 2),
        (2 * MIB + 7, size, 3),
    ] {
        let data = pattern((end - off) as usize, seed);
        expect[off as usize..end as usize].copy_from_slice(&data);
        let got = client
            .write(file.fid, &layout, off, Bytes::from(data))
            .await
            .unwrap();
        assert_eq!(got, end);
    }
    let a = client
        .setattr(
            file.fid,
            SetAttr {
                size: Some(size),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(a.unwrap().size, size);

    for (off, len) in [(0, size), (MIB - 10, 200 * KIB), (size - 100, 1000), (5, 1)] {
        let got = client
            .read(file.fid, &layout, size, off, len as u32)
            .await
            .unwrap();
        let end = (off + len).min(size);
        assert_eq!(
            &got[..],
            &expect[off as usize..end as usize],
            "read {off}+{len}"
        );
    }
    assert!(client
        .read(file.fid, &layout, size, size, 10)
        .await
        .unwrap()
        .is_empty());
    // A read past the end of the objects but inside the file size reads zeros.
    let got = client
        .read(file.fid, &layout, size + MIB, size, MIB as u32)
        .await
        .unwrap();
    assert_eq!(got.len() as u64, MIB);
    assert!(got.iter().all(|&b| b == 0));

    // Truncate to 100 KiB + 1: each object is punched to its share.
    let small = 100 * KIB + 1;
    let a = client
        .setattr(
            file.fid,
            SetAttr {
                size: Some(small),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(a.unwrap().size, small);
    for (i, obj) in layout.as_plain().unwrap().objects.iter().enumerate() {
        let oa = client.ost_getattr(obj.ost_idx, obj.oid).await.unwrap();
        assert_eq!(oa.size, geom.object_size(i as u32, small), "object {i}");
    }
    let got = client
        .read(file.fid, &layout, small, 0, MIB as u32)
        .await
        .unwrap();
    assert_eq!(&got[..], &expect[..small as usize]);
    client.fsync(Some(&layout)).await.unwrap();
    assert!(cluster.mds.inodes.lock().unwrap()[&file.fid].attr.size == small);

    let composite = Layout {
        mirror_count: 2,
        ..layout.clone()
    };
    let err = client
        .read(file.fid, &composite, size, 0, 10)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::CompositeLayout));
    assert_eq!(err.errno(), Errno::EOPNOTSUPP);
    client.unmount().await;
}

#[tokio::test]
async fn rpcs_in_flight_are_capped_per_ost() {
    let cluster = start(Duration::from_millis(30)).await;
    let cfg = ClientConfig {
        max_rpcs_in_flight_per_ost: 3,
        ..test_config()
    };
    let client = Client::mount(&cluster.spec, cfg).await.unwrap();
    let one_stripe = Layout::plain(StripeLayout {
        pattern: pattern::RAID0,
        stripe_size: MIB,
        stripe_count: 1,
        stripe_offset: 0,
        pool: String::new(),
        objects: Vec::new(),
    });
    let (file, layout) = client
        .create(Fid::ROOT, b"big", 0o644, Creds::default(), Some(one_stripe))
        .await
        .unwrap();
    let layout = layout.unwrap();
    assert_eq!(layout.as_plain().unwrap().stripe_count, 1);
    let data = Bytes::from(pattern((12 * MIB) as usize, 9));
    client
        .write(file.fid, &layout, 0, data.clone())
        .await
        .unwrap();
    let max = cluster.oss.max_in_flight.load(Ordering::SeqCst);
    assert!((2..=3).contains(&max), "max in flight {max}");
    let got = client
        .read(file.fid, &layout, 12 * MIB, 0, (12 * MIB) as u32)
        .await
        .unwrap();
    assert!(got == data);
}

#[tokio::test]
async fn mount_errors_are_clear() {
    let cluster = start(Duration::ZERO).await;
    let wrong = MountSpec {
        fsname: "other".into(),
        ..cluster.spec.clone()
    };
    let err = Client::mount(&wrong, test_config()).await.err().unwrap();
    assert_eq!(err.errno(), Errno::ENOENT);
    // Nothing listens on the first NID: mount falls over to the second.
    let dead = Nid::parse("127.0.0.1:1@tcp").unwrap();
    let spec = MountSpec {
        mgs_nids: vec![dead, cluster.spec.mgs_nids[0]],
        fsname: FSNAME.into(),
    };
    let client = Client::mount(&spec, test_config()).await.unwrap();
    client.unmount().await;
    let spec = MountSpec {
        mgs_nids: vec![dead],
        fsname: FSNAME.into(),
    };
    assert!(Client::mount(&spec, test_config()).await.is_err());
}
