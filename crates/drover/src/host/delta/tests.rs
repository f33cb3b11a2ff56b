use proptest::prelude::*;

use super::*;

fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn h(b: &[u8]) -> Hash {
    Hash(*blake3::hash(b).as_bytes())
}

/// What the controller makes, the agent rebuilds exactly (its own code:
/// `drover_agent::delta::apply`), from parts of at most a chunk each.
#[test]
fn a_delta_round_trips_through_the_agent_and_is_small_for_a_small_change() {
    let old = noise(3 << 20, 3);
    let mut new = old.clone();
    new[2_000_000..2_000_016].copy_from_slice(b"one line changed");
    let d = encode(&old, &new).unwrap();
    assert!(d.len() < 2000, "16 bytes changed in 3 MiB: {} bytes", d.len());
    let parts: Vec<_> = parts(h(&new), h(&old), &d).collect();
    assert!(parts.iter().all(|p| p.total == d.len() as u64 && p.data.len() <= drover_proto::CHUNK_SIZE));
    let joined: Vec<u8> = parts.iter().flat_map(|p| p.data.clone()).collect();
    assert_eq!(drover_agent::delta::apply(&old, &joined, new.len() as u64).unwrap(), new);
    // The wrong base never yields the file.
    let other = noise(old.len(), 4);
    assert_ne!(drover_agent::delta::apply(&other, &d, new.len() as u64).ok(), Some(new));
}

/// A base farther back than zstd's default window (8 MiB at level 9) is
/// still reached: the window follows the files' sizes.
#[test]
fn a_change_far_into_a_large_file_still_matches_the_base() {
    let old = noise(20 << 20, 5);
    let mut new = old.clone();
    new[19 << 20] ^= 1;
    let d = encode(&old, &new).unwrap();
    assert!(d.len() < 4096, "{} bytes", d.len());
    assert_eq!(drover_agent::delta::apply(&old, &d, new.len() as u64).unwrap(), new);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_is_made_once_however_many_hosts_need_it() {
    let cache = Arc::new(DeltaCache::default());
    let tasks: Vec<_> = (0..30)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache.get(Hash([1; 32]), Hash([2; 32]), || Ok(Some(vec![7u8; 100]))).await.unwrap().unwrap()
            })
        })
        .collect();
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap());
    }
    assert_eq!(cache.made(), 1);
    assert!(got.iter().all(|d| Arc::ptr_eq(d, &got[0])));
    // No delta (no base held, or no smaller than the file) is remembered too.
    assert!(cache.get(Hash([3; 32]), Hash([2; 32]), || Ok(None)).await.unwrap().is_none());
    assert!(cache.get(Hash([3; 32]), Hash([2; 32]), || panic!("asked once")).await.unwrap().is_none());
    assert!(cache.first_keep(Hash([2; 32])) && !cache.first_keep(Hash([2; 32])));
}

/// An edit of a random file: bytes replaced, inserted or removed at a
/// random place.
#[derive(Debug, Clone)]
enum Edit {
    Replace(usize, Vec<u8>),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..64)).prop_map(|(at, b)| Edit::Replace(at, b)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..64)).prop_map(|(at, b)| Edit::Insert(at, b)),
        (any::<usize>(), 1usize..256).prop_map(|(at, n)| Edit::Remove(at, n)),
    ]
}

fn applied(mut data: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let at = |i: usize| if data.is_empty() { 0 } else { i % data.len() };
        match e {
            Edit::Replace(i, b) => {
                let s = at(*i);
                let end = (s + b.len()).min(data.len());
                data.splice(s..end, b[..end - s].iter().copied());
            }
            Edit::Insert(i, b) => {
                let s = at(*i);
                data.splice(s..s, b.iter().copied());
            }
            Edit::Remove(i, n) => {
                let s = at(*i);
                let end = (s + n).min(data.len());
                data.drain(s..end);
            }
        }
    }
    data
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any file, any edits: the agent rebuilds exactly the new version
    /// from the old one and the delta, and a few edits cost a small delta.
    #[test]
    fn random_edits_of_random_files_round_trip(
        seed in any::<u64>(),
        len in 0usize..400_000,
        text in any::<bool>(),
        edits in prop::collection::vec(edit(), 0..12),
    ) {
        let old = match text {
            true => {
                let line = b"fn main() { println!(\"hello\"); }\n";
                (0..len).map(|i| line[i % line.len()]).collect()
            }
            false => noise(len, seed),
        };
        let new = applied(old.clone(), &edits);
        let d = encode(&old, &new).unwrap();
        prop_assert_eq!(drover_agent::delta::apply(&old, &d, new.len() as u64).unwrap(), new.clone());
        prop_assert!(d.len() <= 64 + edits.len() * 96, "{} edits: {} bytes", edits.len(), d.len());
    }
}
