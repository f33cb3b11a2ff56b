//! Bytes a changed file costs, whole (as drover ships it: 1 MiB chunks,
//! zstd level 3) and as a delta against its previous version (drover's
//! `delta::encode`, at its level and others), with the time to make and to
//! apply each delta. Every delta is applied and checked against the new
//! version. Run by bench/delta.sh:
//!
//! ```text
//! delta_bench NAME OLD NEW [LEVEL...]
//! ```
//!
//! prints one tab-separated line per level: name, old and new sizes, whole
//! bytes, level, delta bytes, delta as a percentage of whole, encode ms,
//! apply ms.

use std::time::Instant;

use drover_agent::delta::{apply, encode_at, LEVEL};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [name, old, new, levels @ ..] = &args[..] else {
        eprintln!("usage: delta_bench NAME OLD NEW [LEVEL...]");
        std::process::exit(2);
    };
    let old = std::fs::read(old).expect("read OLD");
    let new = std::fs::read(new).expect("read NEW");
    let whole: usize = new.chunks(drover_proto::CHUNK_SIZE).map(|c| zstd::bulk::compress(c, 3).unwrap().len()).sum();
    let levels: Vec<i32> =
        if levels.is_empty() { vec![LEVEL] } else { levels.iter().map(|l| l.parse().expect("a level")).collect() };
    for level in levels {
        let t = Instant::now();
        let d = encode_at(&old, &new, level).expect("encode");
        let encode_ms = t.elapsed().as_millis();
        let t = Instant::now();
        let back = apply(&old, &d, new.len() as u64).expect("apply");
        let apply_ms = t.elapsed().as_millis();
        assert!(back == new, "the delta did not rebuild the new version");
        let pct = 100.0 * d.len() as f64 / whole as f64;
        println!(
            "{name}\t{}\t{}\t{whole}\t{level}\t{}\t{pct:.2}\t{encode_ms}\t{apply_ms}",
            old.len(),
            new.len(),
            d.len()
        );
    }
}
