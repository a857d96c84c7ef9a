//! `lfs getstripe`: printing layouts in Lustre's formats.
//!
//! Three shapes, as `liblustreapi` prints them (the rules are re-stated here, the code is
//! ours):
//! - a plain file: the path, `lmm_*` lines with values aligned at column 19, then the
//!   `obdidx objid objid group` table, then a blank line;
//! - a directory's default layout: one line `stripe_count:  1 stripe_size:   1048576 ...`;
//! - a composite (PFL/FLR) layout: `lcm_*` header lines, then for each component its
//!   `lcme_*` lines and an indented sub-layout whose objects print as
//!   `- N: { l_ost_idx: I, l_fid: [seq:oid:ver] }`.
//!
//! Which fields print is a bit set ([`verbose`]); a field's label is printed only when some
//! other bit is set too, so `-c` alone prints the bare number.

use std::io::Write;
use std::path::{Path, PathBuf};

use sheen_wire::msg::{pattern, Layout, LayoutComponent, StripeLayout, EXTENT_EOF};
use sheen_wire::msg::{STRIPE_COUNT_ALL, STRIPE_OFFSET_ANY};
use sheen_wire::Fid;

use crate::error::{describe, is_not_supported, ToolError};
use crate::fsops::{FileKind, FsOps, FID_XATTR, LOV_XATTR};

/// Which fields to print, as Lustre's `enum llapi_layout_verbose`.
pub mod verbose {
    pub const STRIPE_COUNT: u32 = 0x1;
    pub const STRIPE_SIZE: u32 = 0x2;
    pub const STRIPE_OFFSET: u32 = 0x4;
    pub const POOL: u32 = 0x8;
    pub const OBJID: u32 = 0x10;
    pub const GENERATION: u32 = 0x20;
    pub const PATTERN: u32 = 0x40;
    pub const COMP_COUNT: u32 = 0x80;
    pub const COMP_FLAGS: u32 = 0x100;
    pub const COMP_START: u32 = 0x200;
    pub const COMP_END: u32 = 0x400;
    pub const COMP_ID: u32 = 0x800;
    pub const MIRROR_COUNT: u32 = 0x1000;
    pub const MIRROR_ID: u32 = 0x2000;
    /// `-v`: magic, sequence, object id and FID, composite header details.
    pub const DETAIL: u32 = 0x4000_0000;
    /// Everything but [`DETAIL`]: what a bare `lfs getstripe` prints.
    pub const DEFAULT: u32 = STRIPE_COUNT
        | STRIPE_SIZE
        | STRIPE_OFFSET
        | POOL
        | OBJID
        | GENERATION
        | PATTERN
        | COMP_COUNT
        | COMP_FLAGS
        | COMP_START
        | COMP_END
        | COMP_ID
        | MIRROR_COUNT
        | MIRROR_ID;
}

/// User layout magics (lustre_user.h), printed by `-v`.
pub mod magic {
    pub const V1: u32 = 0x0BD1_0BD0;
    pub const V3: u32 = 0x0BD3_0BD0;
    pub const COMP_V1: u32 = 0x0BD6_0BD0;
}

/// Component flags (lustre_user.h `LCME_FL_*`).
pub mod comp_flags {
    pub const STALE: u32 = 0x1;
    pub const PREF_RD: u32 = 0x2;
    pub const PREF_WR: u32 = 0x4;
    pub const INIT: u32 = 0x10;
    pub const NOSYNC: u32 = 0x20;
    pub const EXTENSION: u32 = 0x40;
    pub const PARITY: u32 = 0x80;
    pub const COMPRESS: u32 = 0x100;
}

/// The filesystem's default stripe count and size, shown for a directory whose default
/// layout leaves them unset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsDefaults {
    pub stripe_count: u32,
    pub stripe_size: u64,
}

/// How one layout is printed.
#[derive(Clone, Copy, Debug)]
pub struct View {
    /// [`verbose`] bits.
    pub verbose: u32,
    /// `-y`: YAML-style objects, no path line.
    pub yaml: bool,
    /// Print the path line before the layout (Lustre: the walk depth is not 0).
    pub show_path: bool,
}

/// What is known about the layout being printed.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    pub layout: &'a Layout,
    pub is_dir: bool,
    /// The directory has no default layout and `layout` was made up from the defaults.
    pub fake_default: bool,
    /// The file's FID, for `-v`.
    pub fid: Option<Fid>,
    /// Filled in for unset stripe count or size of a directory template.
    pub defaults: Option<FsDefaults>,
}

/// The made-up default of a directory that has none: everything "use the default".
pub fn unset_dir_default() -> Layout {
    Layout::plain(StripeLayout {
        pattern: 0,
        stripe_size: 0,
        stripe_count: 0,
        stripe_offset: STRIPE_OFFSET_ANY,
        pool: String::new(),
        objects: Vec::new(),
    })
}

/// Formats one path's layout, plain or composite.
pub fn format_layout(path: &str, subject: &Subject<'_>, view: &View) -> String {
    let mut out = String::new();
    match subject.layout.as_plain() {
        Some(stripe) => {
            let ctx = SubCtx {
                stripe,
                layout_gen: subject.layout.layout_gen,
                is_dir: subject.is_dir,
                fake_default: subject.fake_default,
                indent: false,
                skip_objs: false,
                fid: subject.fid,
                defaults: subject.defaults,
            };
            dump_v1v3(&mut out, path, view, &ctx);
        }
        None => dump_composite(&mut out, path, subject, view),
    }
    out
}

/// One stripe layout being printed, with where it sits.
struct SubCtx<'a> {
    stripe: &'a StripeLayout,
    layout_gen: u32,
    is_dir: bool,
    fake_default: bool,
    /// Inside a composite layout: six spaces before every label.
    indent: bool,
    /// An uninstantiated component (or a template): no objects.
    skip_objs: bool,
    fid: Option<Fid>,
    defaults: Option<FsDefaults>,
}

/// Lustre prints stripe counts as signed 16-bit numbers, so "all OSTs" shows as -1.
fn signed_count(count: u32) -> i64 {
    if count == STRIPE_COUNT_ALL {
        -1
    } else {
        i64::from(count)
    }
}

fn signed_offset(offset: u32) -> i64 {
    if offset == STRIPE_OFFSET_ANY {
        -1
    } else {
        i64::from(offset)
    }
}

/// C's `%#llx`: `0x` prefix except for zero.
fn c_hex(v: u64) -> String {
    if v == 0 {
        "0".to_string()
    } else {
        format!("{v:#x}")
    }
}

/// Lustre's `DFID` (`[0x200000400:0x1:0x0]`), or without brackets for YAML.
fn dfid(fid: Fid, brackets: bool) -> String {
    let body = format!("{}:0x{:x}:0x{:x}", c_hex(fid.seq), fid.oid, fid.ver);
    if brackets {
        format!("[{body}]")
    } else {
        body
    }
}

/// The FID of an OST object (Lustre's `ostid_to_fid`): objects in sequence 0 live in the
/// IDIF range, whose sequence carries the OST index.
pub fn object_fid(ost_idx: u32, oid: u64, seq: u64) -> Fid {
    const FID_SEQ_IDIF: u64 = 0x1_0000_0000;
    if seq == 0 {
        let seq = FID_SEQ_IDIF | (u64::from(ost_idx & 0xffff) << 16) | ((oid >> 32) & 0xffff);
        Fid {
            seq,
            oid: (oid & 0xffff_ffff) as u32,
            ver: 0,
        }
    } else {
        Fid {
            seq,
            oid: (oid & 0xffff_ffff) as u32,
            ver: (oid >> 32) as u32,
        }
    }
}

pub fn pattern_name(p: u32) -> String {
    if p & pattern::F_RELEASED != 0 {
        "released".to_string()
    } else if p == pattern::MDT {
        "mdt".to_string()
    } else if p == pattern::RAID0 || p == 0 {
        // 0 is "unset", which Sheen resolves to RAID0.
        "raid0".to_string()
    } else if p == pattern::RAID0 | pattern::OVERSTRIPING {
        "raid0,overstriped".to_string()
    } else {
        format!("{p:x}")
    }
}

fn comp_flags_string(flags: u32) -> String {
    use comp_flags::*;
    const NAMES: [(u32, &str); 9] = [
        (INIT, "init"),
        (STALE, "stale"),
        (PREF_RD | PREF_WR, "prefer"),
        (PREF_RD, "prefrd"),
        (PREF_WR, "prefwr"),
        (NOSYNC, "nosync"),
        (EXTENSION, "extension"),
        (PARITY, "parity"),
        (COMPRESS, "compress"),
    ];
    if flags == 0 {
        return "0".to_string();
    }
    let mut left = flags;
    let mut words = Vec::new();
    for (bits, name) in NAMES {
        if left & bits == bits {
            words.push(name.to_string());
            left &= !bits;
        }
    }
    if left != 0 {
        words.push(format!("{left:#x}"));
    }
    words.join(",")
}

fn is_init(c: &LayoutComponent) -> bool {
    c.flags & comp_flags::INIT != 0 || !c.stripe.objects.is_empty()
}

/// Lustre's on-disk size of a v1/v3 user layout with `n` objects, for `-v`.
fn lum_size(stripe: &StripeLayout) -> usize {
    let header = if stripe.pool.is_empty() { 32 } else { 48 };
    header + 24 * stripe.objects.len()
}

fn stripe_magic(stripe: &StripeLayout) -> u32 {
    if stripe.pool.is_empty() {
        magic::V1
    } else {
        magic::V3
    }
}

/// The header lines of one stripe layout (Lustre's `lov_dump_user_lmm_header`).
fn dump_header(out: &mut String, path: &str, view: &View, ctx: &SubCtx<'_>) {
    use verbose::*;
    let v = view.verbose;
    let s = ctx.stripe;
    let prefix = if ctx.is_dir { "" } else { "lmm_" };
    let space = if ctx.indent { "      " } else { "" };
    // Directory defaults print on one line; everything else one field per line.
    let field_sep = if ctx.is_dir && !view.yaml { " " } else { "\n" };
    let label = |bit: u32, name: &str| -> String {
        if v & !bit != 0 {
            format!("{space}{prefix}{name}")
        } else {
            String::new()
        }
    };
    let mut sep = "";

    if ctx.is_dir && ctx.fake_default && !ctx.indent && v & DETAIL != 0 {
        out.push_str("(Default) ");
    }
    if !view.yaml && !ctx.indent && view.show_path && (v != OBJID || !ctx.is_dir) {
        out.push_str(path);
        out.push('\n');
    }
    if v & DETAIL != 0 && !ctx.is_dir {
        let fid = ctx.fid.unwrap_or(Fid {
            seq: 0,
            oid: 0,
            ver: 0,
        });
        out.push_str(&format!(
            "{space}{prefix}magic:         0x{:08X}\n",
            stripe_magic(s)
        ));
        out.push_str(&format!(
            "{space}{prefix}seq:           {}\n",
            c_hex(fid.seq)
        ));
        out.push_str(&format!(
            "{space}{prefix}object_id:     {}\n",
            c_hex(u64::from(fid.oid))
        ));
        out.push_str(&format!(
            "{space}lmm_fid:           {}\n",
            dfid(fid, !view.yaml)
        ));
    }
    if v & STRIPE_COUNT != 0 {
        out.push_str(&label(STRIPE_COUNT, "stripe_count:  "));
        let count = if ctx.is_dir && s.stripe_count == 0 && s.pattern != pattern::MDT {
            ctx.defaults.map_or(0, |d| signed_count(d.stripe_count))
        } else if !ctx.is_dir && !ctx.skip_objs && !s.objects.is_empty() {
            // An instantiated layout has exactly one object per stripe.
            s.objects.len() as i64
        } else {
            signed_count(s.stripe_count)
        };
        out.push_str(&count.to_string());
        sep = field_sep;
    }
    if v & STRIPE_SIZE != 0 {
        out.push_str(sep);
        out.push_str(&label(STRIPE_SIZE, "stripe_size:   "));
        let size = if ctx.is_dir && s.stripe_size == 0 {
            ctx.defaults.map_or(0, |d| d.stripe_size)
        } else {
            s.stripe_size
        };
        out.push_str(&size.to_string());
        sep = field_sep;
    }
    if v & PATTERN != 0 {
        out.push_str(sep);
        out.push_str(&label(PATTERN, "pattern:       "));
        out.push_str(&pattern_name(s.pattern));
        sep = field_sep;
    }
    if v & GENERATION != 0 && !ctx.is_dir {
        out.push_str(sep);
        out.push_str(&label(GENERATION, "layout_gen:    "));
        let gen = if ctx.skip_objs { 0 } else { ctx.layout_gen };
        out.push_str(&gen.to_string());
        sep = "\n";
    }
    if v & STRIPE_OFFSET != 0 {
        out.push_str(sep);
        out.push_str(&label(STRIPE_OFFSET, "stripe_offset: "));
        let offset = match s.objects.first() {
            _ if ctx.is_dir || ctx.skip_objs => signed_offset(s.stripe_offset),
            _ if s.pattern == pattern::MDT => 0,
            Some(first) => i64::from(first.ost_idx),
            None => signed_offset(s.stripe_offset),
        };
        out.push_str(&offset.to_string());
        sep = field_sep;
    }
    if v & POOL != 0 && !s.pool.is_empty() {
        out.push_str(sep);
        out.push_str(&label(POOL, "pool:          "));
        out.push_str(&s.pool);
        sep = field_sep;
    }
    if !sep.is_empty() {
        out.push('\n');
    }
}

/// One stripe layout with its objects (Lustre's `lov_dump_user_lmm_v1v3`).
fn dump_v1v3(out: &mut String, path: &str, view: &View, ctx: &SubCtx<'_>) {
    dump_header(out, path, view, ctx);
    let s = ctx.stripe;
    let has_objects = s.pattern & pattern::F_RELEASED == 0 && s.pattern != pattern::MDT;
    if !ctx.is_dir && !ctx.skip_objs && view.verbose & verbose::OBJID != 0 && has_objects {
        if ctx.indent {
            out.push_str("      lmm_objects:\n");
        } else if view.yaml {
            out.push_str("lmm_objects:\n");
        } else {
            out.push_str("\tobdidx\t\t objid\t\t objid\t\t group\n");
        }
        for (i, obj) in s.objects.iter().enumerate() {
            let fid = object_fid(obj.ost_idx, obj.oid, obj.seq);
            if view.yaml {
                out.push_str(&format!("      - l_ost_idx: {}\n", obj.ost_idx));
                out.push_str(&format!("        l_fid:     {}\n", dfid(fid, false)));
            } else if ctx.indent {
                out.push_str(&format!(
                    "      - {i}: {{ l_ost_idx: {}, l_fid: {} }}\n",
                    obj.ost_idx,
                    dfid(fid, true)
                ));
            } else {
                // Reserved and MDT0 sequences print in decimal, the others in hex.
                let group = if obj.seq <= 11 {
                    format!("{:>14}", obj.seq)
                } else {
                    format!("{:>14}", c_hex(obj.seq))
                };
                out.push_str(&format!(
                    "\t{:>6}\t{:>14}\t{:>13}\t{group}\n",
                    obj.ost_idx,
                    obj.oid,
                    c_hex(obj.oid)
                ));
            }
        }
    }
    out.push('\n');
}

/// Whether only some single fields were asked for, in which case a composite layout shows
/// just its last instantiated component (Lustre's `print_last_init_comp`).
fn print_last_init_comp(v: u32) -> bool {
    v & verbose::DEFAULT != verbose::DEFAULT
}

/// A composite layout (Lustre's `lov_dump_comp_v1`).
fn dump_composite(out: &mut String, path: &str, subject: &Subject<'_>, view: &View) {
    use verbose::*;
    let v = view.verbose;
    let layout = subject.layout;
    let label = |bit: u32, text: &str| {
        if v & !bit != 0 {
            text.to_string()
        } else {
            String::new()
        }
    };

    if view.show_path && (v != OBJID || !subject.is_dir) && !view.yaml {
        out.push_str(path);
        out.push('\n');
    }
    // Lustre stores and prints sizes of its own on-disk structures; we print the sizes
    // the same layout would have there, so `-v` output lines up with Lustre's.
    let entries_end = 32 + 48 * layout.components.len();
    let mut offsets = Vec::with_capacity(layout.components.len());
    let mut next = entries_end;
    for c in &layout.components {
        offsets.push((next, lum_size(&c.stripe)));
        next += lum_size(&c.stripe);
    }
    if v & DETAIL != 0 {
        out.push_str("composite_header:\n");
        out.push_str(&format!("  lcm_magic:         0x{:08X}\n", magic::COMP_V1));
        out.push_str(&format!("  lcm_size:          {next}\n"));
        // Files would show their mirror state here (`ro`, `wp`, `sp`); Sheen has none yet.
        let flags = match (subject.is_dir, layout.mirror_count > 0) {
            (true, true) => "mirrored",
            (true, false) => "",
            (false, _) => "0",
        };
        out.push_str(&format!("  lcm_flags:         {flags}\n"));
    }
    if v & GENERATION != 0 {
        out.push_str(&label(GENERATION, "  lcm_layout_gen:    "));
        out.push_str(&format!("{}\n", layout.layout_gen));
    }
    if v & MIRROR_COUNT != 0 {
        out.push_str(&label(MIRROR_COUNT, "  lcm_mirror_count:  "));
        out.push_str(&format!("{}\n", layout.mirror_count.max(1)));
    }
    if v & COMP_COUNT != 0 {
        out.push_str(&label(COMP_COUNT, "  lcm_entry_count:   "));
        out.push_str(&format!("{}\n", layout.components.len()));
    }
    if v & DETAIL != 0 && !view.yaml {
        out.push_str("components:\n");
    }

    let entry = |out: &mut String, i: usize, skip_objs: bool| {
        let c = &layout.components[i];
        dump_comp_entry(out, view, i, c, offsets[i]);
        let ctx = SubCtx {
            stripe: &c.stripe,
            layout_gen: layout.layout_gen,
            is_dir: subject.is_dir,
            fake_default: subject.fake_default,
            indent: true,
            skip_objs,
            fid: subject.fid,
            defaults: subject.defaults,
        };
        dump_v1v3(out, path, view, &ctx);
    };
    if layout.components.is_empty() {
        return;
    }
    if print_last_init_comp(v) {
        // The last instantiated component; a template (nothing instantiated) shows its last.
        let first_uninit = layout.components.iter().position(|c| !is_init(c));
        let i = match first_uninit {
            Some(0) | None => layout.components.len() - 1,
            Some(i) => i - 1,
        };
        entry(out, i, false);
        return;
    }
    for (i, c) in layout.components.iter().enumerate() {
        entry(out, i, !is_init(c));
    }
}

/// The `lcme_*` lines of one component (Lustre's `lov_dump_comp_v1_entry`).
fn dump_comp_entry(
    out: &mut String,
    view: &View,
    index: usize,
    c: &LayoutComponent,
    (lcme_offset, lcme_size): (usize, usize),
) {
    use verbose::*;
    let v = view.verbose;
    let mut sep = "";
    if view.yaml {
        out.push_str(&format!("  component{index}:\n"));
    }
    let id_invalid = c.id == u32::MAX;
    if v & COMP_ID != 0 {
        if v & DETAIL != 0 && !view.yaml {
            out.push_str("  - lcme_id:             ");
        } else if v & !COMP_ID != 0 {
            out.push_str("    lcme_id:             ");
        }
        out.push_str(&if id_invalid {
            "N/A".to_string()
        } else {
            c.id.to_string()
        });
        sep = "\n";
    }
    if v & MIRROR_ID != 0 {
        out.push_str(sep);
        if v & !MIRROR_ID != 0 {
            out.push_str("    lcme_mirror_id:      ");
        }
        out.push_str(&if id_invalid {
            "N/A".to_string()
        } else {
            c.mirror_id.to_string()
        });
        sep = "\n";
    }
    if v & COMP_FLAGS != 0 {
        out.push_str(sep);
        if v & !COMP_FLAGS != 0 {
            out.push_str("    lcme_flags:          ");
        }
        out.push_str(&comp_flags_string(c.flags));
        sep = "\n";
    }
    if v & COMP_START != 0 {
        out.push_str(sep);
        if v & !COMP_START != 0 {
            out.push_str("    lcme_extent.e_start: ");
        }
        out.push_str(&c.extent_start.to_string());
        sep = "\n";
    }
    if v & COMP_END != 0 {
        out.push_str(sep);
        if v & !COMP_END != 0 {
            out.push_str("    lcme_extent.e_end:   ");
        }
        if c.extent_end == EXTENT_EOF {
            out.push_str("EOF");
        } else {
            out.push_str(&c.extent_end.to_string());
        }
        sep = "\n";
    }
    out.push_str(sep);
    if view.yaml {
        out.push_str("    sub_layout:\n");
    } else if v & DETAIL != 0 {
        out.push_str(&format!("    lcme_offset:         {lcme_offset}\n"));
        out.push_str(&format!("    lcme_size:           {lcme_size}\n"));
        out.push_str("    sub_layout:\n");
    }
}

// ---------------------------------------------------------------------------------------------
// Walking paths

/// Options of one `lfs getstripe` run.
#[derive(Clone, Copy, Debug)]
pub struct WalkOpts {
    pub verbose: u32,
    pub yaml: bool,
    /// How deep to descend into directories: 0 = only the named paths, `None` = all the way.
    pub max_depth: Option<u32>,
    /// `-R`: do not fill in the filesystem defaults for unset directory fields.
    pub raw: bool,
}

/// Where the filesystem defaults for a path come from (the mount's configuration).
pub trait DefaultsSource {
    fn defaults_for(&mut self, path: &Path) -> Option<FsDefaults>;
}

impl<F: FnMut(&Path) -> Option<FsDefaults>> DefaultsSource for F {
    fn defaults_for(&mut self, path: &Path) -> Option<FsDefaults> {
        self(path)
    }
}

/// Decodes the `lustre.lov` value of `path`.
pub fn decode_layout(path: &Path, bytes: &[u8]) -> Result<Layout, ToolError> {
    sheen_wire::decode::<Layout>(bytes).map_err(|e| ToolError::BadLayout {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Reads the layout xattr of `path`: `Ok(None)` when it has none.
pub fn read_layout(fs: &dyn FsOps, path: &Path) -> Result<Option<Layout>, ToolError> {
    match fs.get_xattr(path, LOV_XATTR) {
        Ok(Some(bytes)) => decode_layout(path, &bytes).map(Some),
        Ok(None) => Ok(None),
        Err(e) if is_not_supported(&e) => Err(ToolError::NotSheen(path.to_path_buf())),
        Err(e) => Err(ToolError::io("cannot get layout of", path, e)),
    }
}

/// The FID of `path` from its `trusted.fid` xattr (text `[seq:oid:ver]` or 16 big-endian
/// bytes), when the mount exposes it.
fn read_fid(fs: &dyn FsOps, path: &Path) -> Option<Fid> {
    let bytes = fs.get_xattr(path, FID_XATTR).ok()??;
    let text = std::str::from_utf8(&bytes)
        .ok()
        .map(|t| t.trim_end_matches('\0'));
    text.and_then(Fid::parse)
        .or_else(|| Fid::from_be_bytes(&bytes))
}

fn needs_defaults(layout: &Layout) -> bool {
    layout
        .components
        .iter()
        .any(|c| c.stripe.stripe_count == 0 || c.stripe.stripe_size == 0)
}

/// Prints the layouts of `path` (and, for directories, of what is below it down to
/// `max_depth`). Errors on individual paths are reported to `err` and make the result an
/// error; the walk goes on.
pub fn walk(
    fs: &dyn FsOps,
    defaults: &mut dyn DefaultsSource,
    opts: &WalkOpts,
    path: &Path,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), ToolError> {
    let mut walker = Walker {
        fs,
        defaults,
        opts,
        out,
        err,
        failed: false,
    };
    walker.visit(path, 0)?;
    if walker.failed {
        Err(ToolError::Failed(format!(
            "getstripe failed for {}",
            path.display()
        )))
    } else {
        Ok(())
    }
}

/// One `getstripe` walk: where it reads, how it prints, whether anything failed.
struct Walker<'a> {
    fs: &'a dyn FsOps,
    defaults: &'a mut dyn DefaultsSource,
    opts: &'a WalkOpts,
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
    failed: bool,
}

impl Walker<'_> {
    /// Reports a problem with one path and goes on with the others.
    fn complain(&mut self, path: &Path, message: &str) -> Result<(), ToolError> {
        self.failed = true;
        writeln!(self.err, "lfs getstripe: {message}")
            .map_err(|e| ToolError::io("cannot write output for", path, e))
    }

    fn print(&mut self, path: &Path, text: &str) -> Result<(), ToolError> {
        self.out
            .write_all(text.as_bytes())
            .map_err(|e| ToolError::io("cannot write output for", path, e))
    }

    fn visit(&mut self, path: &Path, depth: u32) -> Result<(), ToolError> {
        let shown = path.display().to_string();
        let opts = self.opts;
        let view = View {
            verbose: opts.verbose,
            yaml: opts.yaml,
            show_path: opts.max_depth != Some(0),
        };
        // Named paths follow symlinks; entries found while walking do not.
        let kind = match self.fs.kind(path, depth == 0) {
            Ok(Some(kind)) => kind,
            Ok(None) => {
                let message = format!("cannot access '{shown}': No such file or directory");
                return self.complain(path, &message);
            }
            Err(e) => {
                let message = format!("cannot access '{shown}': {}", describe(&e));
                return self.complain(path, &message);
            }
        };
        let layout = match kind {
            FileKind::Other => None,
            FileKind::Dir | FileKind::Regular => match read_layout(self.fs, path) {
                Ok(layout) => layout,
                Err(e) => return self.complain(path, &e.to_string()),
            },
        };
        let text = match (kind, layout) {
            (FileKind::Dir, layout) => {
                let fake_default = layout.is_none();
                let layout = layout.unwrap_or_else(unset_dir_default);
                let defaults = if !opts.raw && needs_defaults(&layout) {
                    self.defaults.defaults_for(path)
                } else {
                    None
                };
                let subject = Subject {
                    layout: &layout,
                    is_dir: true,
                    fake_default,
                    fid: None,
                    defaults,
                };
                format_layout(&shown, &subject, &view)
            }
            (_, Some(layout)) => {
                let detail = opts.verbose & verbose::DETAIL != 0;
                let fid = if detail {
                    read_fid(self.fs, path)
                } else {
                    None
                };
                let subject = Subject {
                    layout: &layout,
                    is_dir: false,
                    fake_default: false,
                    fid,
                    defaults: None,
                };
                format_layout(&shown, &subject, &view)
            }
            (_, None) => format!("{shown} has no stripe info\n"),
        };
        self.print(path, &text)?;
        let descend = kind == FileKind::Dir && opts.max_depth.is_none_or(|max| depth < max);
        if !descend {
            return Ok(());
        }
        let names = match self.fs.read_dir(path) {
            Ok(names) => names,
            Err(e) => {
                let message = format!("cannot read directory '{shown}': {}", describe(&e));
                return self.complain(path, &message);
            }
        };
        for name in names {
            let child: PathBuf = path.join(name);
            self.visit(&child, depth + 1)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sheen_wire::msg::OstObject;

    const MIB: u64 = 1 << 20;

    fn stripe(count: u32, objects: &[(u32, u64)]) -> StripeLayout {
        StripeLayout {
            pattern: pattern::RAID0,
            stripe_size: MIB,
            stripe_count: count,
            stripe_offset: objects.first().map_or(STRIPE_OFFSET_ANY, |o| o.0),
            pool: String::new(),
            objects: objects
                .iter()
                .map(|&(ost_idx, oid)| OstObject {
                    ost_idx,
                    oid,
                    seq: 0,
                })
                .collect(),
        }
    }

    fn file(layout: &Layout, fid: Option<Fid>) -> Subject<'_> {
        Subject {
            layout,
            is_dir: false,
            fake_default: false,
            fid,
            defaults: None,
        }
    }

    fn view(verbose: u32) -> View {
        View {
            verbose,
            yaml: false,
            show_path: true,
        }
    }

    fn check(got: String, want: &str) {
        assert_eq!(got, want, "\n--- got ---\n{got}\n--- want ---\n{want}");
    }

    #[test]
    fn plain_file() {
        let mut layout = Layout::plain(stripe(4, &[(1, 2), (2, 2), (3, 3), (0, 0x284ced6)]));
        layout.layout_gen = 0;
        check(
            format_layout(
                "/mnt/sheen/f",
                &file(&layout, None),
                &view(verbose::DEFAULT),
            ),
            "/mnt/sheen/f\n\
             lmm_stripe_count:  4\n\
             lmm_stripe_size:   1048576\n\
             lmm_pattern:       raid0\n\
             lmm_layout_gen:    0\n\
             lmm_stripe_offset: 1\n\
             \tobdidx\t\t objid\t\t objid\t\t group\n\
             \t     1\t             2\t          0x2\t             0\n\
             \t     2\t             2\t          0x2\t             0\n\
             \t     3\t             3\t          0x3\t             0\n\
             \t     0\t      42258134\t    0x284ced6\t             0\n\
             \n",
        );
    }

    #[test]
    fn plain_file_with_pool_and_big_group() {
        let mut s = stripe(1, &[(7, 0)]);
        s.pool = "fast".to_string();
        s.objects[0].seq = 0x2_8000_0400;
        let mut layout = Layout::plain(s);
        layout.layout_gen = 3;
        check(
            format_layout("f", &file(&layout, None), &view(verbose::DEFAULT)),
            "f\n\
             lmm_stripe_count:  1\n\
             lmm_stripe_size:   1048576\n\
             lmm_pattern:       raid0\n\
             lmm_layout_gen:    3\n\
             lmm_stripe_offset: 7\n\
             lmm_pool:          fast\n\
             \tobdidx\t\t objid\t\t objid\t\t group\n\
             \t     7\t             0\t            0\t   0x280000400\n\
             \n",
        );
    }

    #[test]
    fn plain_file_verbose() {
        let layout = Layout::plain(stripe(1, &[(0, 5)]));
        let fid = Fid {
            seq: 0x2_0000_0401,
            oid: 0x1,
            ver: 0,
        };
        check(
            format_layout(
                "f",
                &file(&layout, Some(fid)),
                &view(verbose::DEFAULT | verbose::DETAIL),
            ),
            "f\n\
             lmm_magic:         0x0BD10BD0\n\
             lmm_seq:           0x200000401\n\
             lmm_object_id:     0x1\n\
             lmm_fid:           [0x200000401:0x1:0x0]\n\
             lmm_stripe_count:  1\n\
             lmm_stripe_size:   1048576\n\
             lmm_pattern:       raid0\n\
             lmm_layout_gen:    0\n\
             lmm_stripe_offset: 0\n\
             \tobdidx\t\t objid\t\t objid\t\t group\n\
             \t     0\t             5\t          0x5\t             0\n\
             \n",
        );
    }

    #[test]
    fn single_fields_print_bare_values() {
        let layout = Layout::plain(stripe(2, &[(3, 1), (0, 1)]));
        let only = |bits| View {
            verbose: bits,
            yaml: false,
            show_path: false,
        };
        check(
            format_layout("f", &file(&layout, None), &only(verbose::STRIPE_COUNT)),
            "2\n\n",
        );
        check(
            format_layout("f", &file(&layout, None), &only(verbose::STRIPE_SIZE)),
            "1048576\n\n",
        );
        check(
            format_layout("f", &file(&layout, None), &only(verbose::STRIPE_OFFSET)),
            "3\n\n",
        );
        check(
            format_layout(
                "f",
                &file(&layout, None),
                &only(verbose::STRIPE_COUNT | verbose::STRIPE_SIZE),
            ),
            "lmm_stripe_count:  2\nlmm_stripe_size:   1048576\n\n",
        );
    }

    #[test]
    fn quiet_prints_objects_only() {
        let layout = Layout::plain(stripe(1, &[(0, 9)]));
        check(
            format_layout("f", &file(&layout, None), &view(verbose::OBJID)),
            "f\n\tobdidx\t\t objid\t\t objid\t\t group\n\
             \t     0\t             9\t          0x9\t             0\n\n",
        );
    }

    #[test]
    fn yaml_plain_file() {
        let layout = Layout::plain(stripe(2, &[(0, 2), (1, 3)]));
        let v = View {
            verbose: verbose::DEFAULT,
            yaml: true,
            show_path: true,
        };
        check(
            format_layout("f", &file(&layout, None), &v),
            "lmm_stripe_count:  2\n\
             lmm_stripe_size:   1048576\n\
             lmm_pattern:       raid0\n\
             lmm_layout_gen:    0\n\
             lmm_stripe_offset: 0\n\
             lmm_objects:\n\
             \x20     - l_ost_idx: 0\n\
             \x20       l_fid:     0x100000000:0x2:0x0\n\
             \x20     - l_ost_idx: 1\n\
             \x20       l_fid:     0x100010000:0x3:0x0\n\
             \n",
        );
    }

    #[test]
    fn directory_default() {
        let mut s = stripe(STRIPE_COUNT_ALL, &[]);
        s.stripe_size = 4 * MIB;
        s.stripe_offset = 2;
        let layout = Layout::plain(s);
        let subject = Subject {
            layout: &layout,
            is_dir: true,
            fake_default: false,
            fid: None,
            defaults: None,
        };
        check(
            format_layout("/mnt/d", &subject, &view(verbose::DEFAULT)),
            "/mnt/d\nstripe_count:  -1 stripe_size:   4194304 pattern:       raid0 \
             stripe_offset: 2\n\n",
        );
        let no_path = View {
            verbose: verbose::DEFAULT,
            yaml: false,
            show_path: false,
        };
        check(
            format_layout("/mnt/d", &subject, &no_path),
            "stripe_count:  -1 stripe_size:   4194304 pattern:       raid0 stripe_offset: 2\n\n",
        );
    }

    #[test]
    fn directory_without_default_uses_fs_defaults() {
        let layout = unset_dir_default();
        let defaults = Some(FsDefaults {
            stripe_count: 1,
            stripe_size: MIB,
        });
        let subject = Subject {
            layout: &layout,
            is_dir: true,
            fake_default: true,
            fid: None,
            defaults,
        };
        let v = View {
            verbose: verbose::DEFAULT,
            yaml: false,
            show_path: false,
        };
        check(
            format_layout("d", &subject, &v),
            "stripe_count:  1 stripe_size:   1048576 pattern:       raid0 stripe_offset: -1\n\n",
        );
        let v = View {
            verbose: verbose::DEFAULT | verbose::DETAIL,
            yaml: false,
            show_path: false,
        };
        check(
            format_layout("d", &subject, &v),
            "(Default) stripe_count:  1 stripe_size:   1048576 pattern:       raid0 \
             stripe_offset: -1\n\n",
        );
        // Without reachable defaults the raw "use the default" zeros are shown.
        let subject = Subject {
            defaults: None,
            ..subject
        };
        let v = View {
            verbose: verbose::DEFAULT,
            yaml: false,
            show_path: false,
        };
        check(
            format_layout("d", &subject, &v),
            "stripe_count:  0 stripe_size:   0 pattern:       raid0 stripe_offset: -1\n\n",
        );
    }

    fn pfl() -> Layout {
        let mut first = stripe(1, &[(0, 2)]);
        first.stripe_count = 1;
        let second = stripe(2, &[]);
        Layout {
            layout_gen: 2,
            mirror_count: 0,
            components: vec![
                LayoutComponent {
                    id: 1,
                    mirror_id: 0,
                    flags: comp_flags::INIT,
                    extent_start: 0,
                    extent_end: MIB,
                    stripe: first,
                },
                LayoutComponent {
                    id: 2,
                    mirror_id: 0,
                    flags: 0,
                    extent_start: MIB,
                    extent_end: EXTENT_EOF,
                    stripe: second,
                },
            ],
        }
    }

    #[test]
    fn composite_file() {
        let layout = pfl();
        check(
            format_layout("/mnt/pfl", &file(&layout, None), &view(verbose::DEFAULT)),
            "/mnt/pfl\n\
             \x20 lcm_layout_gen:    2\n\
             \x20 lcm_mirror_count:  1\n\
             \x20 lcm_entry_count:   2\n\
             \x20   lcme_id:             1\n\
             \x20   lcme_mirror_id:      0\n\
             \x20   lcme_flags:          init\n\
             \x20   lcme_extent.e_start: 0\n\
             \x20   lcme_extent.e_end:   1048576\n\
             \x20     lmm_stripe_count:  1\n\
             \x20     lmm_stripe_size:   1048576\n\
             \x20     lmm_pattern:       raid0\n\
             \x20     lmm_layout_gen:    2\n\
             \x20     lmm_stripe_offset: 0\n\
             \x20     lmm_objects:\n\
             \x20     - 0: { l_ost_idx: 0, l_fid: [0x100000000:0x2:0x0] }\n\
             \n\
             \x20   lcme_id:             2\n\
             \x20   lcme_mirror_id:      0\n\
             \x20   lcme_flags:          0\n\
             \x20   lcme_extent.e_start: 1048576\n\
             \x20   lcme_extent.e_end:   EOF\n\
             \x20     lmm_stripe_count:  2\n\
             \x20     lmm_stripe_size:   1048576\n\
             \x20     lmm_pattern:       raid0\n\
             \x20     lmm_layout_gen:    0\n\
             \x20     lmm_stripe_offset: -1\n\
             \n",
        );
    }

    #[test]
    fn composite_verbose_header_and_sizes() {
        let layout = pfl();
        let got = format_layout(
            "/mnt/pfl",
            &file(&layout, None),
            &view(verbose::DEFAULT | verbose::DETAIL),
        );
        let head = "/mnt/pfl\n\
                    composite_header:\n\
                    \x20 lcm_magic:         0x0BD60BD0\n\
                    \x20 lcm_size:          216\n\
                    \x20 lcm_flags:         0\n\
                    \x20 lcm_layout_gen:    2\n\
                    \x20 lcm_mirror_count:  1\n\
                    \x20 lcm_entry_count:   2\n\
                    components:\n\
                    \x20 - lcme_id:             1\n\
                    \x20   lcme_mirror_id:      0\n\
                    \x20   lcme_flags:          init\n\
                    \x20   lcme_extent.e_start: 0\n\
                    \x20   lcme_extent.e_end:   1048576\n\
                    \x20   lcme_offset:         128\n\
                    \x20   lcme_size:           56\n\
                    \x20   sub_layout:\n\
                    \x20     lmm_magic:         0x0BD10BD0\n";
        assert!(got.starts_with(head), "{got}");
    }

    #[test]
    fn composite_single_field_shows_last_instantiated_component() {
        let layout = pfl();
        let v = View {
            verbose: verbose::STRIPE_COUNT,
            yaml: false,
            show_path: false,
        };
        check(format_layout("f", &file(&layout, None), &v), "1\n\n");
    }

    #[test]
    fn component_flag_words() {
        use comp_flags::*;
        assert_eq!(comp_flags_string(0), "0");
        assert_eq!(comp_flags_string(INIT), "init");
        assert_eq!(
            comp_flags_string(INIT | STALE | PREF_RD | PREF_WR),
            "init,stale,prefer"
        );
        assert_eq!(comp_flags_string(PREF_WR | 0x8000), "prefwr,0x8000");
    }

    #[test]
    fn composite_yaml() {
        let layout = pfl();
        let v = View {
            verbose: verbose::DEFAULT,
            yaml: true,
            show_path: true,
        };
        let got = format_layout("f", &file(&layout, None), &v);
        let want_start = "  lcm_layout_gen:    2\n\
                          \x20 lcm_mirror_count:  1\n\
                          \x20 lcm_entry_count:   2\n\
                          \x20 component0:\n\
                          \x20   lcme_id:             1\n\
                          \x20   lcme_mirror_id:      0\n\
                          \x20   lcme_flags:          init\n\
                          \x20   lcme_extent.e_start: 0\n\
                          \x20   lcme_extent.e_end:   1048576\n\
                          \x20   sub_layout:\n\
                          \x20     lmm_stripe_count:  1\n\
                          \x20     lmm_stripe_size:   1048576\n\
                          \x20     lmm_pattern:       raid0\n\
                          \x20     lmm_layout_gen:    2\n\
                          \x20     lmm_stripe_offset: 0\n\
                          \x20     lmm_objects:\n\
                          \x20     - l_ost_idx: 0\n\
                          \x20       l_fid:     0x100000000:0x2:0x0\n\
                          \n\
                          \x20 component1:\n";
        assert!(got.starts_with(want_start), "{got}");
        assert!(got.ends_with("      lmm_stripe_offset: -1\n\n"), "{got}");
    }

    #[test]
    fn names_and_fids() {
        assert_eq!(
            pattern_name(pattern::RAID0 | pattern::OVERSTRIPING),
            "raid0,overstriped"
        );
        assert_eq!(
            pattern_name(pattern::RAID0 | pattern::F_RELEASED),
            "released"
        );
        assert_eq!(pattern_name(pattern::MDT), "mdt");
        assert_eq!(pattern_name(0x4), "4");
        assert_eq!(
            object_fid(1, 2, 0),
            Fid {
                seq: 0x1_0001_0000,
                oid: 2,
                ver: 0
            }
        );
        assert_eq!(
            dfid(
                Fid {
                    seq: 0,
                    oid: 0,
                    ver: 0
                },
                true
            ),
            "[0:0x0:0x0]"
        );
    }
}
