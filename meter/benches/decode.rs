//! Decoder throughput on real captures (tests/data/wattsup), repeated to ~1.5 M records.
//! Run: cargo bench -p meter --bench decode

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use meter::decoder::{Decoder, Event};

fn corpus() -> (Vec<u8>, u64) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/wattsup");
    let mut one = Vec::new();
    for f in ["fan.raw", "iphone3gs.raw", "iphone4.raw"] {
        one.extend(std::fs::read(dir.join(f)).expect("reference capture"));
    }
    let records = meter::decoder::decode_all(&one).stats.records;
    let reps = 1_500_000 / records as usize;
    (one.repeat(reps), records * reps as u64)
}

fn bench(c: &mut Criterion) {
    let (bytes, records) = corpus();
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(records));
    g.sample_size(10);
    // Chunks of 4 KiB, as reads from a serial port or a file arrive.
    g.bench_function("real_captures_4k_chunks", |b| {
        b.iter(|| {
            let mut d = Decoder::new();
            let mut watts = 0.0;
            let mut n = 0u64;
            for chunk in bytes.chunks(4096) {
                d.feed(chunk, |e| {
                    if let Event::Packet {
                        packet: meter::protocol::Packet::Reply(meter::protocol::Reply::Data(r)),
                        ..
                    } = e
                    {
                        watts += r.watts().unwrap_or(0.0);
                        n += 1;
                    }
                });
            }
            d.finish(|_| {});
            assert_eq!(n, records);
            std::hint::black_box(watts)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
