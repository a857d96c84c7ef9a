//! Micro-benchmarks: frame header encode/decode, body codec, striping math, crc32c, the
//! OSD's read and write path (io_uring with O_DIRECT where the filesystem allows it) on
//! a temporary block file, and the MDT namespace's create, with and without a commit. Run
//! with `cargo bench -p sheen-benches`; one group with `cargo bench -p sheen-benches -- osd`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sheen_layout::Geometry;
use sheen_namespace::{CreateArgs, Namespace};
use sheen_osd::{Osd, OsdLabel};
use sheen_wire::msg::Timespec;
use sheen_wire::msg::{pattern, Layout, OstObject, StripeLayout};
use sheen_wire::{MsgHeader, WireDecode, WireEncode};

/// Size of the OSD bench's block file (fallocated, in the system temp dir).
const OSD_FILE_BYTES: u64 = 512 << 20;
/// The object the write bench overwrites spans this much, so reads hit written blocks.
const OSD_OBJECT_BYTES: u64 = 64 << 20;

fn frame_header(c: &mut Criterion) {
    let mut h = MsgHeader::request(4, 77, 3);
    h.seal_body(&[0u8; 64]);
    c.bench_function("header_encode", |b| {
        b.iter(|| std::hint::black_box(h.encode()))
    });
    let bytes = h.encode();
    c.bench_function("header_decode", |b| {
        b.iter(|| MsgHeader::decode(std::hint::black_box(&bytes)))
    });
}

fn body_codec(c: &mut Criterion) {
    let layout = Layout::plain(StripeLayout {
        pattern: pattern::RAID0,
        stripe_size: 1 << 20,
        stripe_count: 4,
        stripe_offset: 0,
        pool: String::new(),
        objects: (0..4)
            .map(|i| OstObject {
                ost_idx: i,
                oid: 1000 + u64::from(i),
                seq: 0,
            })
            .collect(),
    });
    c.bench_function("layout_encode", |b| {
        b.iter(|| std::hint::black_box(&layout).to_wire())
    });
    let wire = layout.to_wire();
    c.bench_function("layout_decode", |b| {
        b.iter(|| Layout::from_wire(std::hint::black_box(&wire)))
    });
}

fn striping(c: &mut Criterion) {
    let g = Geometry::new(1 << 20, 4).expect("geometry");
    c.bench_function("split_16MiB", |b| {
        b.iter(|| g.split(std::hint::black_box(12345), 16 << 20).count())
    });
}

fn checksums(c: &mut Criterion) {
    let mut group = c.benchmark_group("crc32c");
    for size in [4096usize, 64 << 10, 1 << 20] {
        let data = vec![0xa5u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &data, |b, d| {
            b.iter(|| crc32c::crc32c(d))
        });
    }
    group.finish();
}

/// `Osd::write` (copy-on-write blocks, crc32c per block, commit record, durable on return)
/// and `Osd::read` (crc32c checked per block) of 4 KiB, 64 KiB and 1 MiB, at offsets that
/// walk through a 64 MiB object. The engine is io_uring unless `SHEEN_OSD_ENGINE=sync`.
fn osd_io(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ost0.img");
    let label = OsdLabel {
        fsname: "bench".to_owned(),
        ost_index: 0,
    };
    Osd::format(&path, OSD_FILE_BYTES, &label).expect("format the block file");
    let osd = Osd::open(&path).expect("open the block file");
    let oid = osd.precreate(1).expect("precreate");
    let chunk = vec![0x5au8; 1 << 20];
    let mut offset = 0;
    while offset < OSD_OBJECT_BYTES {
        osd.write(oid, offset, &chunk, Timespec::now())
            .expect("fill the object");
        offset += chunk.len() as u64;
    }
    let mut group = c.benchmark_group("osd");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));
    for size in [4usize << 10, 64 << 10, 1 << 20] {
        let data = vec![0xa5u8; size];
        let n_slots = OSD_OBJECT_BYTES / size as u64;
        group.throughput(Throughput::Bytes(size as u64));
        let mut slot = 0u64;
        group.bench_with_input(BenchmarkId::new("write", size), &data, |b, d| {
            b.iter(|| {
                slot = (slot + 7) % n_slots;
                osd.write(oid, slot * d.len() as u64, d, Timespec::now())
                    .expect("osd write")
            })
        });
        let len = u32::try_from(size).expect("small size");
        group.bench_with_input(BenchmarkId::new("read", size), &len, |b, &len| {
            b.iter(|| {
                slot = (slot + 7) % n_slots;
                osd.read(oid, slot * u64::from(len), len).expect("osd read")
            })
        });
    }
    group.finish();
}

/// `Namespace::create` of an empty file in one directory (one sled transaction), alone and
/// followed by `Namespace::flush` (what the MDS's commit before a reply costs: sled writes
/// its log buffer, then one fdatasync), in the system temp dir.
fn namespace_create(c: &mut Criterion) {
    let mut group = c.benchmark_group("namespace");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));
    for commit in [false, true] {
        let dir = tempfile::tempdir().expect("temp dir");
        let ns = Namespace::open_flushed_by_caller(dir.path()).expect("open the namespace");
        let parent = ns
            .create(create_args(sheen_wire::Fid::ROOT, "d".into(), 0o040755))
            .expect("mkdir")
            .fid;
        let mut n = 0u64;
        let name = if commit { "create+commit" } else { "create" };
        group.bench_function(name, |b| {
            b.iter(|| {
                n += 1;
                ns.create(create_args(parent, format!("f{n}"), 0o100644))
                    .expect("create");
                if commit {
                    ns.flush().expect("commit");
                }
            })
        });
    }
    group.finish();
}

fn create_args(parent: sheen_wire::Fid, name: String, mode: u32) -> CreateArgs {
    CreateArgs {
        parent,
        name: name.into_bytes(),
        mode,
        rdev: 0,
        uid: 0,
        gid: 0,
        umask: 0o022,
        symlink: None,
        layout: None,
    }
}

criterion_group!(
    benches,
    frame_header,
    body_codec,
    striping,
    checksums,
    osd_io,
    namespace_create
);
criterion_main!(benches);
