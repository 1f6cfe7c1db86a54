//! What the protocol logic of one call costs on the CPU, step by step, apart from the kernel's
//! IPC: parsing signatures (the manager, once per module), marshalling (the stub, per call),
//! checking and answering (the server, per call). `cargo bench -p kmod-calls`.

use criterion::{Criterion, criterion_group, criterion_main};
use kmod_calls::{Descriptor, Export, ExportTable, Limits, RequestHeader};
use kmodlab_ipc::msg::Received;
use std::hint::black_box;

const KVSTORE: &[u8] = b"kvstore_get(in[@1], usize, out[@3], usize, outlen[@2]) -> i32\0\
kvstore_delete(in[@1], usize) -> i32\0kvstore_count() -> u64\0\
kvstore_put(in[@1], usize, in[@3], usize) -> i32\0";

fn received(req: &kmod_calls::Request) -> Received {
    let mut r = Received {
        sender: 1,
        op: 65,
        words: req.words,
        len: 16,
        lease_count: req.leases().len() as u64,
        ..Received::default()
    };
    for (i, l) in req.leases().iter().enumerate() {
        r.lease_len[i] = l.len;
        r.lease_flags[i] = l.flags;
    }
    r
}

fn bench(c: &mut Criterion) {
    let table = ExportTable::parse(KVSTORE).unwrap();
    let (index, get) = table.find("kvstore_get").unwrap();
    let desc = Descriptor::new(index, &get);
    let regs = [0x1000, 16, 0x2000, 440, 0x3000, 0];
    let limits = Limits::DEFAULT;

    c.bench_function("manager: parse kvstore's section (4 records)", |b| {
        b.iter(|| ExportTable::parse(black_box(KVSTORE)).unwrap().len())
    });
    let first = KVSTORE.split(|&b| b == 0).next().unwrap();
    c.bench_function("manager: parse one record (kvstore_get)", |b| {
        b.iter(|| Export::parse(black_box(first)).unwrap())
    });
    c.bench_function("manager: descriptor to/from bytes", |b| {
        b.iter(|| Descriptor::from_bytes(&black_box(desc).to_bytes()).unwrap())
    });
    c.bench_function("stub: marshal kvstore_get", |b| {
        b.iter(|| black_box(&desc).marshal(black_box(&regs), &limits).unwrap())
    });
    let req = desc.marshal(&regs, &limits).unwrap();
    let rcv = received(&req);
    c.bench_function("server: decode header + accept kvstore_get", |b| {
        b.iter(|| {
            let h = RequestHeader::decode(black_box(&req.header)).unwrap();
            desc.accept(&h, black_box(&rcv), &limits).unwrap()
        })
    });
    let acc = desc
        .accept(&RequestHeader::decode(&req.header).unwrap(), &rcv, &limits)
        .unwrap();
    c.bench_function("server: registers + finish", |b| {
        b.iter(|| {
            let regs = black_box(&acc).registers(&[1, 0, 2, 0, 3, 0]);
            acc.finish(black_box(regs[1]), &[0, 0, 0, 0, 12, 0])
        })
    });
    let fin = acc.finish(0, &[0, 0, 0, 0, 12, 0]);
    c.bench_function("stub: complete", |b| {
        b.iter(|| black_box(&req).complete(black_box(&fin.words)).unwrap())
    });
    c.bench_function("whole call without the kernel", |b| {
        b.iter(|| {
            let req = black_box(&desc).marshal(black_box(&regs), &limits).unwrap();
            let rcv = received(&req);
            let h = RequestHeader::decode(&req.header).unwrap();
            let acc = desc.accept(&h, &rcv, &limits).unwrap();
            let regs = acc.registers(&[1, 0, 2, 0, 3, 0]);
            let fin = acc.finish(regs[1], &[0, 0, 0, 0, 12, 0]);
            req.complete(&fin.words).unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
