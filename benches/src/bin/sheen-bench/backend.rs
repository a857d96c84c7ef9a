//! Where the workloads' I/O goes: a directory through the kernel (`--dir`, any mount: Sheen's
//! FUSE mount, a peer filesystem, a local disk) or Sheen's native client library
//! (`--native`), with no FUSE in the path.
//!
//! Both offer the same small set of blocking calls, made from the workload's task threads.
//! The native backend runs one tokio runtime and each task thread blocks on its own calls,
//! so N tasks are N synchronous streams, as through a mount.

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use sheen_client::{Bytes, Client, ClientConfig, ClientError, Creds, Errno, Fid, Layout};
use sheen_client::{FileReader, MountSpec, SetAttr};

/// A directory the workload works in.
#[derive(Clone, Debug)]
pub enum Dir {
    Path(PathBuf),
    Fid(Fid),
}

/// An open file.
pub enum Handle {
    File(File),
    Native {
        fid: Fid,
        layout: Layout,
        size: u64,
        /// Opened for reading: reads go through it, which reads ahead of sequential reads.
        reader: Option<Mutex<FileReader>>,
    },
}

/// How a file is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Open {
    /// For writing; created if missing, never truncated.
    Write,
    /// For reading.
    Read,
}

pub enum Backend {
    Mount { root: PathBuf, direct: bool },
    Native(Native),
}

pub struct Native {
    runtime: tokio::runtime::Runtime,
    client: Client,
    root: Fid,
    creds: Creds,
    /// Stripe template for new files; `None` inherits the directory's default.
    template: Option<Layout>,
}

fn not_found(error: &ClientError) -> bool {
    error.errno() == Errno::ENOENT
}

fn exists(error: &ClientError) -> bool {
    error.errno() == Errno::EEXIST
}

impl Backend {
    /// A mount-path backend rooted at `root` (created if missing).
    pub fn mount(root: &Path, direct: bool) -> Result<Backend> {
        fs::create_dir_all(root).with_context(|| format!("mkdir -p {}", root.display()))?;
        Ok(Backend::Mount {
            root: root.to_owned(),
            direct,
        })
    }

    /// A native backend: mounts `spec` with the client library and works in `path` inside
    /// the filesystem (created if missing).
    pub fn native(
        spec: &str,
        path: &str,
        template: Option<Layout>,
        max_readahead: Option<u64>,
    ) -> Result<Backend> {
        let spec: MountSpec = spec
            .parse()
            .with_context(|| format!("bad mount spec {spec:?} (want NID:/FSNAME)"))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("sheen-bench-client")
            .build()
            .context("cannot start the tokio runtime")?;
        let mut config = ClientConfig::default();
        if let Some(max) = max_readahead {
            config.max_readahead_bytes = max;
        }
        let client = runtime
            .block_on(Client::mount(&spec, config))
            .with_context(|| format!("cannot mount {spec}"))?;
        // SAFETY: getuid and getgid cannot fail and touch no memory.
        let creds = unsafe {
            Creds {
                uid: libc::getuid(),
                gid: libc::getgid(),
                // The modes the benchmark asks for, as they are.
                umask: 0,
            }
        };
        let mut native = Native {
            root: client.root_fid(),
            runtime,
            client,
            creds,
            template,
        };
        for component in path.split('/').filter(|c| !c.is_empty()) {
            native.root = native.mkdir(native.root, component)?;
        }
        Ok(Backend::Native(native))
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Mount { .. } => "mount",
            Backend::Native(_) => "native",
        }
    }

    pub fn root(&self) -> Dir {
        match self {
            Backend::Mount { root, .. } => Dir::Path(root.clone()),
            Backend::Native(native) => Dir::Fid(native.root),
        }
    }

    /// Creates a subdirectory (fine if it exists).
    pub fn mkdir(&self, parent: &Dir, name: &str) -> Result<Dir> {
        match (self, parent) {
            (Backend::Mount { .. }, Dir::Path(parent)) => {
                let path = parent.join(name);
                match fs::create_dir(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e).with_context(|| format!("mkdir {}", path.display())),
                }
                Ok(Dir::Path(path))
            }
            (Backend::Native(native), Dir::Fid(parent)) => {
                Ok(Dir::Fid(native.mkdir(*parent, name)?))
            }
            _ => bail!("directory of another backend"),
        }
    }

    pub fn rmdir(&self, parent: &Dir, name: &str) -> Result<()> {
        match (self, parent) {
            (Backend::Mount { .. }, Dir::Path(parent)) => {
                let path = parent.join(name);
                fs::remove_dir(&path).with_context(|| format!("rmdir {}", path.display()))
            }
            (Backend::Native(native), Dir::Fid(parent)) => native
                .block_on(native.client.rmdir(*parent, name.as_bytes()))
                .with_context(|| format!("rmdir {name}")),
            _ => bail!("directory of another backend"),
        }
    }

    /// Removes a file; `missing_ok` makes ENOENT a success.
    pub fn unlink(&self, dir: &Dir, name: &str, missing_ok: bool) -> Result<()> {
        match (self, dir) {
            (Backend::Mount { .. }, Dir::Path(dir)) => {
                let path = dir.join(name);
                match fs::remove_file(&path) {
                    Ok(()) => Ok(()),
                    Err(e) if missing_ok && e.kind() == ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(e).with_context(|| format!("unlink {}", path.display())),
                }
            }
            (Backend::Native(native), Dir::Fid(dir)) => {
                match native.block_on(native.client.unlink(*dir, name.as_bytes())) {
                    Ok(()) => Ok(()),
                    Err(e) if missing_ok && not_found(&e) => Ok(()),
                    Err(e) => Err(e).with_context(|| format!("unlink {name}")),
                }
            }
            _ => bail!("directory of another backend"),
        }
    }

    /// mdtest's create: creates a file, writes `data` (may be empty), closes it.
    pub fn create_file(&self, dir: &Dir, name: &str, data: &[u8]) -> Result<()> {
        match (self, dir) {
            (Backend::Mount { .. }, Dir::Path(dir)) => {
                let path = dir.join(name);
                let file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .with_context(|| format!("create {}", path.display()))?;
                if !data.is_empty() {
                    file.write_all_at(data, 0)
                        .with_context(|| format!("write {}", path.display()))?;
                }
                Ok(())
            }
            (Backend::Native(native), Dir::Fid(dir)) => {
                let handle = native.create(*dir, name, false)?;
                if !data.is_empty() {
                    self.write_at(&handle, 0, data)?;
                    self.close(handle, Some(data.len() as u64))?;
                }
                Ok(())
            }
            _ => bail!("directory of another backend"),
        }
    }

    /// mdtest's stat: returns the file size.
    pub fn stat(&self, dir: &Dir, name: &str) -> Result<u64> {
        match (self, dir) {
            (Backend::Mount { .. }, Dir::Path(dir)) => {
                let path = dir.join(name);
                let meta =
                    fs::metadata(&path).with_context(|| format!("stat {}", path.display()))?;
                Ok(meta.len())
            }
            (Backend::Native(native), Dir::Fid(dir)) => {
                let (attr, _) = native
                    .block_on(native.client.lookup(*dir, name.as_bytes()))
                    .with_context(|| format!("stat {name}"))?;
                Ok(attr.size)
            }
            _ => bail!("directory of another backend"),
        }
    }

    /// mdtest's read: opens, reads the whole file into `buf`, closes; returns its length.
    pub fn read_file(&self, dir: &Dir, name: &str, buf: &mut Vec<u8>) -> Result<usize> {
        match (self, dir) {
            (Backend::Mount { .. }, Dir::Path(dir)) => {
                let path = dir.join(name);
                buf.clear();
                let mut file =
                    File::open(&path).with_context(|| format!("open {}", path.display()))?;
                std::io::Read::read_to_end(&mut file, buf)
                    .with_context(|| format!("read {}", path.display()))
            }
            (Backend::Native(_), Dir::Fid(_)) => {
                let handle = self.open(dir, name, Open::Read)?;
                let Handle::Native { size, .. } = &handle else {
                    bail!("native open gave a file");
                };
                let size = usize::try_from(*size)?;
                buf.resize(size, 0);
                let n = self.read_at(&handle, 0, buf)?;
                buf.truncate(n);
                Ok(n)
            }
            _ => bail!("directory of another backend"),
        }
    }

    /// Opens a file for IOR.
    pub fn open(&self, dir: &Dir, name: &str, how: Open) -> Result<Handle> {
        match (self, dir) {
            (Backend::Mount { direct, .. }, Dir::Path(dir)) => {
                let path = dir.join(name);
                let mut options = OpenOptions::new();
                match how {
                    Open::Write => options.write(true).create(true),
                    Open::Read => options.read(true),
                };
                if *direct {
                    options.custom_flags(libc::O_DIRECT);
                }
                let file = options
                    .open(&path)
                    .with_context(|| format!("open {}", path.display()))?;
                Ok(Handle::File(file))
            }
            (Backend::Native(native), Dir::Fid(dir)) => match how {
                Open::Write => native.create(*dir, name, true),
                Open::Read => {
                    let (attr, layout) = native
                        .block_on(native.client.lookup(*dir, name.as_bytes()))
                        .with_context(|| format!("open {name}"))?;
                    let layout = layout.with_context(|| format!("{name} has no layout"))?;
                    let reader = native.client.reader(attr.fid, layout.clone(), attr.size);
                    Ok(Handle::Native {
                        fid: attr.fid,
                        layout,
                        size: attr.size,
                        reader: Some(Mutex::new(reader)),
                    })
                }
            },
            _ => bail!("directory of another backend"),
        }
    }

    pub fn write_at(&self, handle: &Handle, offset: u64, data: &[u8]) -> Result<()> {
        match (self, handle) {
            (Backend::Mount { .. }, Handle::File(file)) => file
                .write_all_at(data, offset)
                .with_context(|| format!("pwrite at {offset}")),
            (Backend::Native(native), Handle::Native { fid, layout, .. }) => {
                // One copy into an owned buffer; the client then slices it per stripe.
                let bytes = Bytes::copy_from_slice(data);
                native
                    .block_on(native.client.write(*fid, layout, offset, bytes))
                    .with_context(|| format!("write at {offset}"))?;
                Ok(())
            }
            _ => bail!("handle of another backend"),
        }
    }

    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read.
    pub fn read_at(&self, handle: &Handle, offset: u64, buf: &mut [u8]) -> Result<usize> {
        match (self, handle) {
            (Backend::Mount { .. }, Handle::File(file)) => {
                let mut done = 0;
                while done < buf.len() {
                    let n = file
                        .read_at(&mut buf[done..], offset + done as u64)
                        .with_context(|| format!("pread at {}", offset + done as u64))?;
                    if n == 0 {
                        break;
                    }
                    done += n;
                }
                Ok(done)
            }
            (
                Backend::Native(native),
                Handle::Native {
                    fid,
                    layout,
                    size,
                    reader,
                },
            ) => {
                let len = u32::try_from(buf.len())?;
                let data = match reader {
                    Some(reader) => {
                        let mut reader = reader
                            .lock()
                            .map_err(|_| anyhow::anyhow!("a reader panicked"))?;
                        native.block_on(reader.read(offset, len))
                    }
                    None => native.block_on(native.client.read(*fid, layout, *size, offset, len)),
                }
                .with_context(|| format!("read at {offset}"))?;
                buf[..data.len()].copy_from_slice(&data);
                Ok(data.len())
            }
            _ => bail!("handle of another backend"),
        }
    }

    pub fn fsync(&self, handle: &Handle) -> Result<()> {
        match (self, handle) {
            (Backend::Mount { .. }, Handle::File(file)) => file.sync_all().context("fsync"),
            (Backend::Native(native), Handle::Native { layout, .. }) => native
                .block_on(native.client.fsync(Some(layout)))
                .context("fsync"),
            _ => bail!("handle of another backend"),
        }
    }

    /// Closes a file; natively, a writer reports the size it wrote (`written_end`) to the MDS,
    /// as the FUSE client does at close (size-on-MDS).
    pub fn close(&self, handle: Handle, written_end: Option<u64>) -> Result<()> {
        match (self, handle) {
            (Backend::Mount { .. }, Handle::File(file)) => {
                drop(file);
                Ok(())
            }
            (Backend::Native(native), Handle::Native { fid, .. }) => match written_end {
                Some(size) => native.set_size(fid, size),
                None => Ok(()),
            },
            _ => bail!("handle of another backend"),
        }
    }

    /// Natively, records a shared file's final size once every task has written (each task
    /// alone would report only the end of its own segment); nothing to do through a mount.
    pub fn finish_shared(&self, dir: &Dir, name: &str, size: u64) -> Result<()> {
        match (self, dir) {
            (Backend::Mount { .. }, _) => Ok(()),
            (Backend::Native(native), Dir::Fid(dir)) => {
                let (attr, _) = native
                    .block_on(native.client.lookup(*dir, name.as_bytes()))
                    .with_context(|| format!("lookup {name}"))?;
                native.set_size(attr.fid, size)
            }
            _ => bail!("directory of another backend"),
        }
    }
}

impl Native {
    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    fn mkdir(&self, parent: Fid, name: &str) -> Result<Fid> {
        let made = self.block_on(
            self.client
                .mkdir(parent, name.as_bytes(), 0o755, self.creds),
        );
        match made {
            Ok(attr) => Ok(attr.fid),
            Err(e) if exists(&e) => {
                let (attr, _) = self
                    .block_on(self.client.lookup(parent, name.as_bytes()))
                    .with_context(|| format!("lookup {name}"))?;
                if !attr.is_dir() {
                    bail!("{name} exists and is not a directory");
                }
                Ok(attr.fid)
            }
            Err(e) => Err(e).with_context(|| format!("mkdir {name}")),
        }
    }

    /// Creates a file; with `open_existing`, an existing one is opened instead.
    fn create(&self, dir: Fid, name: &str, open_existing: bool) -> Result<Handle> {
        let created = self.block_on(self.client.create(
            dir,
            name.as_bytes(),
            0o644,
            self.creds,
            self.template.clone(),
        ));
        let (attr, layout) = match created {
            Ok(found) => found,
            Err(e) if open_existing && exists(&e) => self
                .block_on(self.client.lookup(dir, name.as_bytes()))
                .with_context(|| format!("lookup {name}"))?,
            Err(e) => return Err(e).with_context(|| format!("create {name}")),
        };
        let layout = layout.with_context(|| format!("{name} created without a layout"))?;
        Ok(Handle::Native {
            fid: attr.fid,
            layout,
            size: attr.size,
            reader: None,
        })
    }

    fn set_size(&self, fid: Fid, size: u64) -> Result<()> {
        let attr = SetAttr {
            size: Some(size),
            ..SetAttr::default()
        };
        self.block_on(self.client.setattr_mds(fid, attr))
            .context("setattr size")?;
        Ok(())
    }
}

impl Drop for Native {
    fn drop(&mut self) {
        self.runtime.block_on(self.client.unmount());
    }
}
