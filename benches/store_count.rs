//! The event writer's cost per event in the SQLite store, as fixed work for instruction
//! counts and WAL frames, which do not depend on what else the machine is doing (the `store`
//! group of `benches/collect.rs` gives the time):
//!
//! ```sh
//! cargo bench --bench store_count --no-run    # prints the binary's path
//! target/release/deps/store_count-* first 500 20
//! valgrind --tool=callgrind --toggle-collect='store_count::write_batches' \
//!     target/release/deps/store_count-* first 50 100
//! ```
//!
//! Arguments: the events (`first`: each event a new visitor's first page view, marked as the
//! collector marks it, as in the beacon workload of `benches/load.sh`; `first_unmarked`: the
//! same without the mark; `returning`: a page view by a visitor of the prefill, one of its
//! session); the events per batch (the writer's batches are `batch_size`, 2,000, when the
//! queue is full, a few dozen at a few thousand beacons a second, and about 1,400 at the
//! 20,000 a second of the beacon workload, with the linger of up to 20 ms); the batches
//! measured.
//!
//! The file first gets 100,000 first visits (not measured), so the id indexes are far larger
//! than what one batch touches. Then `write_batches` writes the measured batches (callgrind
//! counts only inside it, checkpoints included as the store makes them). Then a few more
//! batches, each after a checkpoint that empties the write-ahead log, give the WAL frames (the
//! pages a commit writes) per event. Ids are made as the proxy makes them (`smuuid` a random
//! UUID v4, from a fixed seed so runs compare; `smids` time-ordered).

use std::path::Path;
use std::time::Instant;

use smproxy::identity::time_ordered_uuid;
use smproxy::store::{Event, EventKind, SqliteStore, Store};

/// Events in the file before measuring.
const PREFILL: usize = 100_000;

/// Batches after the measured ones whose WAL frames are counted.
const FRAME_BATCHES: usize = 5;

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    First,
    FirstUnmarked,
    Returning,
}

struct Gen {
    rng: fastrand::Rng,
    ts_ms: i64,
    /// The prefill's visitors, for `returning`.
    visitors: Vec<String>,
}

impl Gen {
    fn visitor_id(&mut self) -> String {
        uuid::Builder::from_random_bytes(self.rng.u128(..).to_le_bytes())
            .into_uuid()
            .hyphenated()
            .to_string()
    }

    fn event(&mut self, variant: Variant) -> Event {
        self.ts_ms += 1;
        let mut e = Event::new(
            EventKind::Pageview,
            self.ts_ms,
            "bench",
            "http://127.0.0.1/p/page.html",
            "/p/page.html",
        );
        e.visitor_id = Some(match variant {
            Variant::Returning => self.visitors[self.rng.usize(..self.visitors.len())].clone(),
            _ => self.visitor_id(),
        });
        e.smids = Some(time_ordered_uuid().hyphenated().to_string());
        e.new_visitor = variant == Variant::First;
        e.title = Some("A page".into());
        e.screen = Some("1920x1080".into());
        e.language = Some("en-GB".into());
        e.user_agent = Some("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36".into());
        e.browser = Some("Chrome".into());
        e.os = Some("Linux".into());
        e.device = Some("pc".into());
        e.ip_truncated = Some("127.0.0.0".into());
        e
    }

    fn batches(&mut self, variant: Variant, size: usize, n: usize) -> Vec<Vec<Event>> {
        (0..n)
            .map(|_| (0..size).map(|_| self.event(variant)).collect())
            .collect()
    }
}

/// The measured work, a function of its own for callgrind's `--toggle-collect`.
#[inline(never)]
fn write_batches(store: &SqliteStore, batches: &[Vec<Event>]) -> usize {
    batches
        .iter()
        .map(|b| store.insert_batch(b).expect("insert"))
        .sum()
}

/// Empties the write-ahead log (copies it into the file and truncates it).
fn truncate_wal(side: &rusqlite::Connection) {
    let busy: i64 = side
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
        .expect("checkpoint");
    assert_eq!(busy, 0, "the checkpoint could not finish");
}

/// The frames in the write-ahead log now.
fn wal_frames(side: &rusqlite::Connection) -> i64 {
    side.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
        .expect("checkpoint")
}

fn run(dir: &Path, variant: Variant, size: usize, n: usize) {
    let path = dir.join("events.db");
    let store = SqliteStore::open(&path).expect("a store in the temp dir");
    let mut make = Gen {
        rng: fastrand::Rng::with_seed(6),
        ts_ms: 1_790_000_000_000,
        visitors: Vec::with_capacity(PREFILL),
    };
    for batch in make.batches(Variant::First, 500, PREFILL / 500) {
        store.insert_batch(&batch).expect("prefill");
        make.visitors
            .extend(batch.into_iter().filter_map(|e| e.visitor_id));
    }
    let side = rusqlite::Connection::open(&path).expect("a second connection");
    truncate_wal(&side);

    let measured = make.batches(variant, size, n);
    let start = Instant::now();
    let events = write_batches(&store, &measured);
    let elapsed = start.elapsed();

    let mut frames = 0;
    let mut counted = 0;
    for batch in make.batches(variant, size, FRAME_BATCHES) {
        truncate_wal(&side);
        counted += store.insert_batch(&batch).expect("insert");
        frames += wal_frames(&side);
    }
    println!(
        "{events} events in {n} batches of {size}: {:.1} µs per event; \
         {:.2} WAL frames per event ({frames} frames, {counted} events)",
        elapsed.as_secs_f64() * 1e6 / events.max(1) as f64,
        frames as f64 / counted.max(1) as f64,
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let variant = match args.first().map(String::as_str).unwrap_or("first") {
        "first" => Variant::First,
        "first_unmarked" => Variant::FirstUnmarked,
        "returning" => Variant::Returning,
        other => panic!("unknown variant {other:?}: first, first_unmarked or returning"),
    };
    let size: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(500);
    let n: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(20);
    let dir = std::env::temp_dir().join(format!("smproxy-store-count-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    run(&dir, variant, size.max(1), n);
    let _ = std::fs::remove_dir_all(&dir);
}
