//! Micro-benchmarks: frame header encode/decode, body codec, striping math, crc32c.
//! Run with `cargo bench -p sheen-benches`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sheen_layout::Geometry;
use sheen_wire::msg::{pattern, Layout, OstObject, StripeLayout};
use sheen_wire::{MsgHeader, WireDecode, WireEncode};

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

criterion_group!(benches, frame_header, body_codec, striping, checksums);
criterion_main!(benches);
