//! `lfs`: Lustre's user command, with Lustre's option names and output.
//!
//! - `setstripe`/`getstripe` go through the mount, as the xattr `lustre.lov`;
//! - `df`, `osts`, `mdts` mount a native client of their own from the spec of the FUSE
//!   mount that holds the path (or of every Sheen mount).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{ArgAction, Args, Parser, Subcommand};
use sheen_wire::TargetKind;

use crate::cli::{emit, parse_args, report, select_mounts, status, Env};
use crate::df::{format_df, format_target_list, DfOpts};
use crate::error::ToolError;
use crate::getstripe::{verbose, walk, FsDefaults, WalkOpts};
use crate::mounts::mount_for;
use crate::setstripe::{delete_default, parse_pool, parse_stripe_count, parse_stripe_index};
use crate::setstripe::{setstripe, StripeRequest};
use crate::size::{parse_stripe_size, HumanBase};
use crate::source::spec_fsname;

#[derive(Parser, Debug)]
#[command(
    name = "lfs",
    version,
    about = "Lustre's lfs for Sheen: file layouts and filesystem usage",
    subcommand_required = true,
    arg_required_else_help = true
)]
struct Lfs {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create a file with a layout, or set (-d: delete) a directory's default layout.
    Setstripe(SetstripeArgs),
    /// Show the layout of files and the default layout of directories.
    Getstripe(GetstripeArgs),
    /// Show the space (or -i inode) usage of each MDT and OST.
    Df(DfArgs),
    /// List the OSTs of the filesystem holding PATH (or of every Sheen mount).
    Osts { path: Option<PathBuf> },
    /// List the MDTs of the filesystem holding PATH (or of every Sheen mount).
    Mdts { path: Option<PathBuf> },
}

#[derive(Args, Debug)]
struct SetstripeArgs {
    /// Number of OSTs to stripe over (-1: all, 0: the default).
    #[arg(
        short = 'c',
        long = "stripe-count",
        alias = "stripe_count",
        value_name = "COUNT",
        allow_negative_numbers = true,
        value_parser = parse_stripe_count
    )]
    stripe_count: Option<u32>,
    /// Bytes per stripe, a multiple of 64 KiB; k, M, G suffixes (0: the default).
    #[arg(
        short = 'S',
        long = "stripe-size",
        alias = "stripe_size",
        value_name = "SIZE",
        value_parser = parse_stripe_size
    )]
    stripe_size: Option<u64>,
    /// Index of the first OST (-1: let the MDS choose).
    #[arg(
        short = 'i',
        long = "stripe-index",
        visible_alias = "stripe-offset",
        aliases = ["stripe_index", "stripe_offset"],
        value_name = "INDEX",
        allow_negative_numbers = true,
        value_parser = parse_stripe_index
    )]
    stripe_index: Option<u32>,
    /// OST pool to allocate from.
    #[arg(short = 'p', long = "pool", value_name = "POOL", value_parser = parse_pool)]
    pool: Option<String>,
    /// Delete the default layout of the directories.
    #[arg(
        short = 'd',
        long = "delete",
        conflicts_with_all = ["stripe_count", "stripe_size", "stripe_index", "pool"]
    )]
    delete: bool,
    /// Files to create, or directories to set the default layout of.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

#[derive(Args, Debug)]
struct GetstripeArgs {
    /// Show only the stripe count.
    #[arg(short = 'c', long = "stripe-count", alias = "stripe_count")]
    stripe_count: bool,
    /// Show only the stripe size.
    #[arg(short = 'S', long = "stripe-size", alias = "stripe_size")]
    stripe_size: bool,
    /// Show only the index of the first OST.
    #[arg(
        short = 'i',
        long = "stripe-index",
        visible_alias = "stripe-offset",
        aliases = ["stripe_index", "stripe_offset"]
    )]
    stripe_index: bool,
    /// Show only the pool.
    #[arg(short = 'p', long = "pool")]
    pool: bool,
    /// Show only the layout generation.
    #[arg(short = 'g', long = "generation")]
    generation: bool,
    /// Show only the layout pattern.
    #[arg(short = 'L', long = "layout")]
    layout: bool,
    /// Also show the magic, the FID and composite layout details.
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    /// Show a directory's own default layout, not its entries.
    #[arg(short = 'd', long = "directory")]
    directory: bool,
    /// Descend into directories all the way down.
    #[arg(short = 'r', long = "recursive", conflicts_with = "directory")]
    recursive: bool,
    /// Show only the objects.
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// Print in YAML.
    #[arg(short = 'y', long = "yaml")]
    yaml: bool,
    /// Show unset directory fields as stored (0), not the filesystem defaults.
    #[arg(short = 'R', long = "raw")]
    raw: bool,
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

#[derive(Args, Debug)]
#[command(disable_help_flag = true)]
struct DfArgs {
    /// Sizes in powers of 1024 (K, M, G, T).
    #[arg(short = 'h', long = "human-readable")]
    human: bool,
    /// Sizes in powers of 1000 (k, M, G, T).
    #[arg(short = 'H', long = "si", conflicts_with = "human")]
    si: bool,
    /// Show inodes instead of blocks.
    #[arg(short = 'i', long = "inodes")]
    inodes: bool,
    /// Print help.
    #[arg(long = "help", action = ArgAction::Help)]
    help: Option<bool>,
    /// A path in the filesystem to show (default: every Sheen mount).
    path: Option<PathBuf>,
}

/// Runs `lfs` with `argv` (program name first) and returns the exit status.
pub fn run(argv: &[OsString], env: &mut Env<'_>) -> i32 {
    let args: Lfs = match parse_args(argv, env) {
        Ok(args) => args,
        Err(code) => return code,
    };
    let result = match args.cmd {
        Cmd::Setstripe(a) => return run_setstripe(&a, env),
        Cmd::Getstripe(a) => return run_getstripe(&a, env),
        Cmd::Df(a) => return run_df(&a, env),
        Cmd::Osts { path } => run_targets(path.as_deref(), TargetKind::Ost, env),
        Cmd::Mdts { path } => run_targets(path.as_deref(), TargetKind::Mdt, env),
    };
    match result {
        Ok(code) => code,
        Err(e) => report(env, "lfs", &e),
    }
}

fn run_setstripe(a: &SetstripeArgs, env: &mut Env<'_>) -> i32 {
    let req = StripeRequest {
        count: a.stripe_count,
        size: a.stripe_size,
        offset: a.stripe_index,
        pool: a.pool.clone(),
    };
    let mut failed = false;
    for path in &a.paths {
        let done = if a.delete {
            delete_default(env.fs, path)
        } else {
            setstripe(env.fs, path, &req).map(drop)
        };
        if let Err(e) = done {
            report(env, "lfs setstripe", &e);
            failed = true;
        }
    }
    status(failed)
}

/// The [`verbose`] bits and walk depth the options ask for, as Lustre computes them.
fn getstripe_opts(a: &GetstripeArgs) -> WalkOpts {
    let singles = [
        (a.stripe_count, verbose::STRIPE_COUNT),
        (a.stripe_size, verbose::STRIPE_SIZE),
        (a.stripe_index, verbose::STRIPE_OFFSET),
        (a.pool, verbose::POOL),
        (a.generation, verbose::GENERATION),
        (a.layout, verbose::PATTERN),
    ];
    let mut bits = 0;
    // Lustre walks one level below a directory unless told otherwise.
    let mut max_depth = Some(1);
    if a.verbose {
        bits = verbose::DEFAULT | verbose::DETAIL;
    } else {
        for (set, bit) in singles {
            if set {
                bits |= bit;
                // Asking for single fields means "this path", not its entries.
                max_depth = Some(0);
            }
        }
    }
    if a.directory {
        max_depth = Some(0);
    }
    if a.recursive {
        max_depth = None;
    }
    if bits == 0 {
        bits = verbose::DEFAULT;
    }
    if a.quiet {
        bits = verbose::OBJID;
    }
    WalkOpts {
        verbose: bits,
        yaml: a.yaml,
        max_depth,
        raw: a.raw,
    }
}

fn run_getstripe(a: &GetstripeArgs, env: &mut Env<'_>) -> i32 {
    let opts = getstripe_opts(a);
    let (fs, connector, mountinfo) = (env.fs, env.connector, env.mountinfo);
    // Filesystem defaults per mount spec, asked for only when a directory leaves its stripe
    // count or size unset, and at most once per filesystem.
    let mut cache: BTreeMap<String, Option<FsDefaults>> = BTreeMap::new();
    let mut warning: Option<String> = None;
    let mut defaults = |path: &Path| -> Option<FsDefaults> {
        let real = fs.canonicalize(path).ok()?;
        let mounts = crate::mounts::sheen_mounts(&mountinfo().ok()?);
        let spec = mount_for(&mounts, &real)?.spec.clone();
        cache
            .entry(spec.clone())
            .or_insert_with(|| match connector.connect(&spec) {
                Ok(handle) => {
                    let c = handle.config();
                    Some(FsDefaults {
                        stripe_count: c.default_stripe_count,
                        stripe_size: c.default_stripe_size,
                    })
                }
                Err(e) => {
                    warning.get_or_insert_with(|| {
                        format!("cannot get the default layout of the filesystem: {e}")
                    });
                    None
                }
            })
            .as_ref()
            .copied()
    };
    let mut failed = false;
    for path in &a.paths {
        if let Err(e) = walk(fs, &mut defaults, &opts, path, env.out, env.err) {
            report(env, "lfs getstripe", &e);
            failed = true;
        }
    }
    if let Some(w) = warning {
        let _ignored = writeln!(
            env.err,
            "lfs getstripe: warning: {w}; showing stored values"
        );
    }
    status(failed)
}

fn run_df(a: &DfArgs, env: &mut Env<'_>) -> i32 {
    let opts = DfOpts {
        inodes: a.inodes,
        human: match (a.human, a.si) {
            (true, _) => Some(HumanBase::Binary),
            (false, true) => Some(HumanBase::Decimal),
            (false, false) => None,
        },
    };
    let mounts = match select_mounts(env, a.path.as_deref()) {
        Ok(m) => m,
        Err(e) => return report(env, "lfs df", &e),
    };
    let mut failed = false;
    for m in mounts {
        let mut handle = match env.connector.connect(&m.spec) {
            Ok(h) => h,
            Err(e) => {
                failed = true;
                report(env, "lfs df", &e);
                continue;
            }
        };
        let stats = handle.target_statfs();
        let fsname = handle.config().fsname.clone();
        let fsname = if fsname.is_empty() {
            spec_fsname(&m.spec).unwrap_or("")
        } else {
            &fsname
        };
        let (text, any_failed) = format_df(fsname, &m.dir.to_string_lossy(), &stats, &opts);
        failed |= any_failed;
        if let Err(e) = emit(env, &text) {
            return report(env, "lfs df", &e);
        }
    }
    status(failed)
}

fn run_targets(path: Option<&Path>, kind: TargetKind, env: &mut Env<'_>) -> Result<i32, ToolError> {
    let prog = if kind == TargetKind::Ost {
        "lfs osts"
    } else {
        "lfs mdts"
    };
    let mut failed = false;
    for m in select_mounts(env, path)? {
        match env.connector.connect(&m.spec) {
            Ok(handle) => emit(env, &format_target_list(handle.config(), kind))?,
            Err(e) => {
                failed = true;
                report(env, prog, &e);
            }
        }
    }
    Ok(status(failed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::tests::run_with;
    use crate::error::{EXIT_FAILURE, EXIT_USAGE};
    use crate::fsops::FileKind;
    use crate::setstripe::template;
    use crate::setstripe::tests::FakeFs;
    use crate::source::tests::{sample_fs, FakeConnector};
    use sheen_wire::msg::{Layout, OstObject, STRIPE_COUNT_ALL, STRIPE_OFFSET_ANY};

    const SPEC: &str = "127.0.0.1:7000@tcp:/sheen";
    const MOUNTINFO: &str =
        "90 27 0:52 / /mnt/sheen rw,relatime shared:5 - fuse.sheen 127.0.0.1:7000@tcp:/sheen rw\n";

    fn lfs(fs: &FakeFs, connector: &FakeConnector, args: &[&str]) -> (i32, String, String) {
        let argv: Vec<OsString> = std::iter::once("lfs")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect();
        run_with(fs, connector, MOUNTINFO, |env| run(&argv, env))
    }

    fn connector() -> FakeConnector {
        let mut c = FakeConnector::default();
        c.filesystems.insert(SPEC.to_string(), sample_fs());
        c
    }

    fn sheen_tree() -> FakeFs {
        let fs = FakeFs::default();
        fs.add("/mnt/sheen", FileKind::Dir);
        fs.add("/mnt/sheen/d", FileKind::Dir);
        fs
    }

    #[test]
    fn setstripe_then_getstripe() {
        let fs = sheen_tree();
        let c = connector();
        let (code, out, err) = lfs(
            &fs,
            &c,
            &[
                "setstripe",
                "-c",
                "-1",
                "-S",
                "4M",
                "-i",
                "-1",
                "/mnt/sheen/d",
            ],
        );
        assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
        let s = fs.layout("/mnt/sheen/d").unwrap();
        let s = s.as_plain().unwrap();
        assert_eq!(
            (s.stripe_count, s.stripe_size, s.stripe_offset),
            (STRIPE_COUNT_ALL, 4 << 20, STRIPE_OFFSET_ANY)
        );

        let (code, out, _) = lfs(&fs, &c, &["getstripe", "-d", "/mnt/sheen/d"]);
        assert_eq!(code, 0);
        assert_eq!(
            out,
            "stripe_count:  -1 stripe_size:   4194304 pattern:       raid0 stripe_offset: -1\n\n"
        );

        // A new file gets the template; the MDS fills in the objects.
        let (code, _, err) = lfs(
            &fs,
            &c,
            &["setstripe", "--stripe-count", "2", "/mnt/sheen/f"],
        );
        assert_eq!((code, err.as_str()), (0, ""));
        assert_eq!(
            fs.layout("/mnt/sheen/f")
                .unwrap()
                .as_plain()
                .unwrap()
                .stripe_count,
            2
        );

        // `-d` removes the default again.
        let (code, _, _) = lfs(&fs, &c, &["setstripe", "-d", "/mnt/sheen/d"]);
        assert_eq!(code, 0);
        assert_eq!(fs.layout("/mnt/sheen/d"), None);
    }

    #[test]
    fn setstripe_refuses_an_instantiated_file() {
        let fs = sheen_tree();
        fs.add("/mnt/sheen/f", FileKind::Regular);
        let mut layout = template(&StripeRequest::default());
        layout.components[0].stripe.objects = vec![OstObject {
            ost_idx: 0,
            oid: 7,
            seq: 0,
        }];
        fs.set_layout("/mnt/sheen/f", &layout);
        let (code, out, err) = lfs(&fs, &connector(), &["setstripe", "-c", "2", "/mnt/sheen/f"]);
        assert_eq!(code, EXIT_FAILURE);
        assert_eq!(out, "");
        assert_eq!(
            err,
            "lfs setstripe: setstripe error for '/mnt/sheen/f': stripe already set\n"
        );
    }

    #[test]
    fn usage_errors_exit_2() {
        let fs = sheen_tree();
        let c = connector();
        for args in [
            &["setstripe", "-S", "100k", "/mnt/sheen/x"][..],
            &["setstripe", "-c", "-2", "/mnt/sheen/x"],
            &["setstripe", "-c", "3"],
            &["setstripe", "-d", "-c", "2", "/mnt/sheen/d"],
            &["getstripe"],
            &["frobnicate"],
            &[],
            &["df", "--bogus"],
        ] {
            let (code, out, err) = lfs(&fs, &c, args);
            assert_eq!(code, EXIT_USAGE, "{args:?}: {out}{err}");
            assert!(
                !err.is_empty() || !out.is_empty(),
                "{args:?} must explain itself"
            );
        }
        let (_, _, err) = lfs(&fs, &c, &["setstripe", "-S", "100k", "/mnt/sheen/x"]);
        assert!(err.contains("must be a multiple of 65536 bytes"), "{err}");
    }

    #[test]
    fn help_exits_0() {
        let fs = sheen_tree();
        let c = connector();
        for args in [
            &["--help"][..],
            &["setstripe", "--help"],
            &["df", "--help"],
            &["--version"],
        ] {
            let (code, out, err) = lfs(&fs, &c, args);
            assert_eq!((code, err.as_str()), (0, ""), "{args:?}");
            assert!(!out.is_empty());
        }
        let (_, out, _) = lfs(&fs, &c, &["df", "--help"]);
        assert!(out.contains("--human-readable"), "{out}");
    }

    #[test]
    fn getstripe_directory_without_default_shows_fs_defaults() {
        let fs = sheen_tree();
        let (code, out, err) = lfs(&fs, &connector(), &["getstripe", "-d", "/mnt/sheen/d"]);
        assert_eq!((code, err.as_str()), (0, ""));
        assert_eq!(
            out,
            "stripe_count:  1 stripe_size:   1048576 pattern:       raid0 stripe_offset: -1\n\n"
        );
        // Unreachable servers: the stored "default" zeros, and a warning.
        let (code, out, err) = lfs(
            &fs,
            &FakeConnector::default(),
            &["getstripe", "-d", "/mnt/sheen/d"],
        );
        assert_eq!(code, 0);
        assert_eq!(
            out,
            "stripe_count:  0 stripe_size:   0 pattern:       raid0 stripe_offset: -1\n\n"
        );
        assert!(
            err.contains("warning: cannot get the default layout"),
            "{err}"
        );
    }

    #[test]
    fn getstripe_lists_a_directory_and_its_files() {
        let fs = sheen_tree();
        fs.add("/mnt/sheen/d/f", FileKind::Regular);
        let mut layout: Layout = template(&StripeRequest {
            count: Some(1),
            size: Some(1 << 20),
            ..Default::default()
        });
        layout.components[0].stripe.objects = vec![OstObject {
            ost_idx: 1,
            oid: 4,
            seq: 0,
        }];
        fs.set_layout("/mnt/sheen/d/f", &layout);
        let (code, out, err) = lfs(&fs, &connector(), &["getstripe", "/mnt/sheen/d"]);
        assert_eq!((code, err.as_str()), (0, ""));
        assert_eq!(
            out,
            "/mnt/sheen/d\n\
             stripe_count:  1 stripe_size:   1048576 pattern:       raid0 stripe_offset: -1\n\
             \n\
             /mnt/sheen/d/f\n\
             lmm_stripe_count:  1\n\
             lmm_stripe_size:   1048576\n\
             lmm_pattern:       raid0\n\
             lmm_layout_gen:    0\n\
             lmm_stripe_offset: 1\n\
             \tobdidx\t\t objid\t\t objid\t\t group\n\
             \t     1\t             4\t          0x4\t             0\n\
             \n"
        );
        let (_, out, _) = lfs(&fs, &connector(), &["getstripe", "-c", "/mnt/sheen/d/f"]);
        assert_eq!(out, "1\n\n");
    }

    #[test]
    fn getstripe_errors() {
        let fs = FakeFs {
            foreign: vec![PathBuf::from("/tmp")],
            ..Default::default()
        };
        fs.add("/tmp/x", FileKind::Regular);
        let (code, out, err) = lfs(&fs, &connector(), &["getstripe", "/tmp/x", "/nope"]);
        assert_eq!(code, EXIT_FAILURE);
        assert_eq!(out, "");
        assert!(
            err.contains("lfs getstripe: '/tmp/x' is not on a Sheen filesystem"),
            "{err}"
        );
        assert!(
            err.contains("cannot access '/nope': No such file or directory"),
            "{err}"
        );
    }

    #[test]
    fn df_and_target_lists() {
        let fs = sheen_tree();
        let c = connector();
        let (code, out, err) = lfs(&fs, &c, &["df"]);
        assert_eq!((code, err.as_str()), (0, ""));
        assert!(out.starts_with(
            "UUID                   1K-blocks        Used   Available Use% Mounted on\n"
        ));
        assert!(out.contains(
            "sheen-OST0001_UUID      10485760        1760    10400000   1% /mnt/sheen[OST:1]\n"
        ));
        let (code, out, _) = lfs(&fs, &c, &["df", "-ih", "/mnt/sheen/d"]);
        assert_eq!(code, 0);
        assert!(
            out.starts_with(
                "UUID                      Inodes       IUsed       IFree IUse% Mounted on\n"
            ),
            "{out}"
        );
        let (code, out, _) = lfs(&fs, &c, &["osts", "/mnt/sheen"]);
        assert_eq!(
            (code, out.as_str()),
            (
                0,
                "OBDS:\n0: sheen-OST0000_UUID ACTIVE\n1: sheen-OST0001_UUID ACTIVE\n"
            )
        );
        let (code, out, _) = lfs(&fs, &c, &["mdts"]);
        assert_eq!(
            (code, out.as_str()),
            (0, "MDTS:\n0: sheen-MDT0000_UUID ACTIVE\n")
        );
    }

    #[test]
    fn df_outside_sheen_and_unreachable() {
        let fs = sheen_tree();
        fs.add("/home", FileKind::Dir);
        let (code, _, err) = lfs(&fs, &connector(), &["df", "/home"]);
        assert_eq!(code, EXIT_FAILURE);
        assert_eq!(err, "lfs df: /home isn't mounted on Sheen\n");
        let (code, out, err) = lfs(&fs, &FakeConnector::default(), &["df"]);
        assert_eq!((code, out.as_str()), (EXIT_FAILURE, ""));
        assert!(
            err.starts_with("lfs df: cannot reach filesystem 127.0.0.1:7000@tcp:/sheen"),
            "{err}"
        );
    }

    #[test]
    fn getstripe_option_mapping() {
        let parse = |args: &[&str]| {
            let argv: Vec<OsString> = ["lfs", "getstripe"]
                .iter()
                .chain(args)
                .chain(&["p"])
                .map(OsString::from)
                .collect();
            match Lfs::try_parse_from(argv).unwrap().cmd {
                Cmd::Getstripe(a) => getstripe_opts(&a),
                other => panic!("{other:?}"),
            }
        };
        let o = parse(&[]);
        assert_eq!((o.verbose, o.max_depth), (verbose::DEFAULT, Some(1)));
        let o = parse(&["-c"]);
        assert_eq!((o.verbose, o.max_depth), (verbose::STRIPE_COUNT, Some(0)));
        let o = parse(&["-v", "-c"]);
        assert_eq!(
            (o.verbose, o.max_depth),
            (verbose::DEFAULT | verbose::DETAIL, Some(1))
        );
        let o = parse(&["-q", "-r"]);
        assert_eq!((o.verbose, o.max_depth), (verbose::OBJID, None));
        let o = parse(&["--stripe_count", "--stripe-offset"]);
        assert_eq!(o.verbose, verbose::STRIPE_COUNT | verbose::STRIPE_OFFSET);
        let o = parse(&["-d", "-y"]);
        assert_eq!((o.max_depth, o.yaml), (Some(0), true));
    }
}
