//! The background event writer: a bounded queue the request path drops events into without
//! ever waiting, and one thread that drains it into the [`Store`] in batches, retrying a
//! failing store for a bounded time and flushing everything on shutdown.
//!
//! Counters make every outcome visible: after a clean shutdown
//! `enqueued == written + abandoned`, and `dropped` counts what was refused at the door.
//!
//! An event may also be queued with an acknowledgement ([`EventQueue::try_enqueue_acked`]):
//! the writer completes it once the batch holding the event is committed, or as soon as a
//! write of that batch fails. That is how `store.durability: strict` answers a beacon only
//! after its event is on disk; every event queued meanwhile joins the same transaction, so one
//! commit acknowledges many beacons (group commit).
//!
//! Batches are what makes the store cheap per event: a commit writes every page the batch
//! touched, and the pages that all events share (the tail of the table and of its time
//! indexes) are written once per commit, not once per event; even the leaves of the visitor
//! index, whose keys are random, are shared more often the larger the batch. So when a batch
//! comes out small the writer lingers ([`WriterConfig::linger`], in steps of
//! [`WriterConfig::linger_step`]) while events keep arriving, unless an event in it is waiting
//! for its acknowledgement (see [`Worker::run`]).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::{Event, Store};

/// How the writer batches and retries. `Default` suits one proxy in front of a few sites.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterConfig {
    /// Events the queue holds before `try_enqueue` starts dropping. This is what absorbs a
    /// slow or failing store; memory is about 1 KiB per queued event.
    pub capacity: usize,
    /// Most events written in one transaction. Larger batches amortise the commit (the pages
    /// it writes, the fsync in WAL checkpoints) but hold the write lock longer against another
    /// writer of the same file (WAL readers do not wait for it).
    pub batch_size: usize,
    /// Retries of a failed batch before it is abandoned (so `max_retries + 1` attempts).
    pub max_retries: u32,
    /// Wait before the first retry; doubles after each failure up to `max_backoff`.
    pub retry_backoff: Duration,
    /// Longest wait between two retries.
    pub max_backoff: Duration,
    /// The longest the writer waits, per batch, when it finds fewer than `batch_size` events
    /// waiting, so that more join the transaction. Bounds the extra time an event spends in
    /// memory before its commit (relaxed durability only: a batch holding an event that awaits
    /// its acknowledgement is written at once). `Duration::ZERO`: no linger.
    pub linger: Duration,
    /// The linger is slept in steps of this length, each followed by taking what arrived; a
    /// step that brings nothing ends it, so a quiet moment costs one step, and the queue never
    /// holds more than one step's worth of events because of the linger.
    pub linger_step: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        // 8 retries from 50 ms doubling to a 5 s cap ride out about 11 s of store trouble
        // (a locked file, a restarting database) while 10,000 queued events keep arriving.
        WriterConfig {
            capacity: 10_000,
            batch_size: 2_000,
            max_retries: 8,
            retry_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            // Short against the loss window a crash already has (the queue). At a few
            // thousand beacons a second one 5 ms step makes batches of ten or more; at the
            // twenty thousand a second of one busy core (benches/load.sh, beacons), batches
            // grow to several hundred, which the store writes for about 10 % less CPU per
            // event than the 100 or so that a single 5 ms sleep gathered.
            linger: Duration::from_millis(20),
            linger_step: Duration::from_millis(5),
        }
    }
}

/// A snapshot of the writer's counters (for `/metrics` and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriterStats {
    /// Events accepted into the queue.
    pub enqueued: u64,
    /// Events refused: the queue was full (for a beacon's events, still full after
    /// [`EventQueue::enqueue`]'s wait), or shutting down.
    pub dropped: u64,
    /// Beacon events that found the queue full and waited for room (stored or dropped).
    pub delayed: u64,
    /// Events committed to the store.
    pub written: u64,
    /// Failed `insert_batch` calls (each retry that fails counts once).
    pub write_errors: u64,
    /// Accepted events given up after `max_retries` failed retries of their batch.
    pub abandoned: u64,
    /// Events waiting in the queue now.
    pub queue_depth: u64,
    /// Successful `insert_batch` calls, and the time they took in total (microseconds):
    /// the store's write latency.
    pub batches: u64,
    pub batch_micros: u64,
    /// Acknowledged events whose acknowledgement reported a failure (strict durability: the
    /// beacon was answered 503 so that the tracker may send it again).
    pub ack_failures: u64,
    /// The latest write failed and no write has succeeded since: the store is in trouble.
    pub failing: bool,
}

/// Completed by the writer: `Ok` once the event's batch is committed, `Err` when a write of
/// it failed (the writer may still store it on a retry, so a resent event can appear twice:
/// at least once, never lost once acknowledged).
pub type Ack = tokio::sync::oneshot::Receiver<Result<(), AckError>>;

/// Why an acknowledged event was not confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("the queue is full or closing")]
    Refused,
    #[error("the store failed to commit the batch")]
    WriteFailed,
}

/// What one try at queueing came to.
enum Offer {
    Accepted,
    /// The queue is full: the message, to offer again.
    Full(Msg),
    /// Refused and counted in `dropped`.
    Refused,
}

/// What travels through the channel. Events are boxed so the channel's preallocated ring
/// holds pointers, not `capacity` full-size events.
enum Msg {
    Event(Box<Event>, Option<AckSender>),
    /// Sent once by shutdown after the queue is closed; FIFO order means every accepted event
    /// is ahead of it.
    Stop,
}

type AckSender = tokio::sync::oneshot::Sender<Result<(), AckError>>;

struct Shared {
    tx: SyncSender<Msg>,
    capacity: usize,
    /// Set by shutdown; `try_enqueue` refuses from then on.
    closed: AtomicBool,
    /// Producers between checking `closed` and finishing their send. Shutdown waits for zero
    /// before sending `Stop`, so no event can land behind `Stop` and be lost (see `close`).
    in_flight: AtomicUsize,
    enqueued: AtomicU64,
    dequeued: AtomicU64,
    dropped: AtomicU64,
    delayed: AtomicU64,
    /// Producers waiting for room, and their wake-up when the writer takes a batch.
    waiting: AtomicUsize,
    room: tokio::sync::Notify,
    written: AtomicU64,
    write_errors: AtomicU64,
    abandoned: AtomicU64,
    batches: AtomicU64,
    batch_micros: AtomicU64,
    ack_failures: AtomicU64,
    failing: AtomicBool,
}

/// The request path's handle: cheap to clone, `try_enqueue` never blocks and never does I/O.
#[derive(Clone)]
pub struct EventQueue {
    shared: Arc<Shared>,
}

impl EventQueue {
    /// Queues `event` for writing. Returns `false`, and counts the event in `dropped`, when the
    /// queue is full or the writer is shutting down: losing an analytics event is better than
    /// making a visitor's request wait for the database.
    pub fn try_enqueue(&self, event: Event) -> bool {
        matches!(
            self.offer(Msg::Event(Box::new(event), None), true),
            Offer::Accepted
        )
    }

    /// Like [`EventQueue::try_enqueue`], but returns an [`Ack`] the writer completes once the
    /// event is committed (or its write failed); `None` when the event was refused (and
    /// counted in `dropped`).
    pub fn try_enqueue_acked(&self, event: Event) -> Option<Ack> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        matches!(
            self.offer(Msg::Event(Box::new(event), Some(tx)), true),
            Offer::Accepted
        )
        .then_some(rx)
    }

    /// Queues a beacon's event, waiting up to `patience` for room when the queue is full
    /// (counted in `delayed`), and dropping it after that, or at once while the store is
    /// failing. No visitor waits for a beacon's answer (the tracker sends it in the
    /// background), so a burst faster than a working store is better slowed than lost: the
    /// writer takes up to a batch at a time, so room comes back in steps of a commit. Returns
    /// whether the event was queued.
    pub async fn enqueue(&self, event: Event, patience: Duration) -> bool {
        self.enqueue_waiting(Msg::Event(Box::new(event), None), patience)
            .await
    }

    /// [`EventQueue::enqueue`] with an [`Ack`], as [`EventQueue::try_enqueue_acked`].
    pub async fn enqueue_acked(&self, event: Event, patience: Duration) -> Option<Ack> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.enqueue_waiting(Msg::Event(Box::new(event), Some(tx)), patience)
            .await
            .then_some(rx)
    }

    async fn enqueue_waiting(&self, msg: Msg, patience: Duration) -> bool {
        let mut msg = match self.offer(msg, false) {
            Offer::Accepted => return true,
            Offer::Refused => return false,
            // Full because the store is failing: no room is coming soon, and beacons held
            // through an outage would only pile up.
            Offer::Full(back) if self.is_failing() => {
                return matches!(self.offer(back, true), Offer::Accepted)
            }
            Offer::Full(back) => back,
        };
        let s = &*self.shared;
        s.delayed.fetch_add(1, Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            // Counted as waiting, and subscribed to the wake-up, before the offer: room made
            // between a full offer and the wait is not missed.
            s.waiting.fetch_add(1, Ordering::SeqCst);
            let room = s.room.notified();
            // At the deadline, a last offer that drops when the queue is still full.
            let last = tokio::time::Instant::now() >= deadline;
            let offer = self.offer(msg, last);
            if let Offer::Full(_) = offer {
                let _ = tokio::time::timeout_at(deadline, room).await;
            }
            s.waiting.fetch_sub(1, Ordering::SeqCst);
            msg = match offer {
                Offer::Full(back) => back,
                Offer::Accepted => return true,
                Offer::Refused => return false,
            };
        }
    }

    /// Counts an acknowledged event that was not confirmed (answered as a failure).
    pub fn count_ack_failure(&self) {
        self.shared.ack_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the latest store write failed (no success since).
    pub fn is_failing(&self) -> bool {
        self.shared.failing.load(Ordering::Relaxed)
    }

    /// One try at queueing `msg`; `Full` hands it back, counted in `dropped` only when
    /// `drop_if_full` (then answered `Refused`).
    fn offer(&self, msg: Msg, drop_if_full: bool) -> Offer {
        let s = &*self.shared;
        // SeqCst on both sides (here and in `close`) gives one total order: either this load
        // sees `closed`, or `close` sees our `in_flight` increment and waits for the send.
        s.in_flight.fetch_add(1, Ordering::SeqCst);
        let offer = if s.closed.load(Ordering::SeqCst) {
            Offer::Refused
        } else {
            match s.tx.try_send(msg) {
                Ok(()) => Offer::Accepted,
                Err(TrySendError::Full(back)) if !drop_if_full => Offer::Full(back),
                // Disconnected: the writer thread died (a store panic); nothing will drain.
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Offer::Refused,
            }
        };
        // Count before leaving the critical section so a shutdown's final stats include us.
        match offer {
            Offer::Accepted => s.enqueued.fetch_add(1, Ordering::Relaxed),
            Offer::Refused => s.dropped.fetch_add(1, Ordering::Relaxed),
            Offer::Full(_) => 0,
        };
        s.in_flight.fetch_sub(1, Ordering::SeqCst);
        offer
    }

    /// Events waiting in the queue (approximate while producers and the writer are busy).
    pub fn queue_depth(&self) -> u64 {
        let s = &*self.shared;
        s.enqueued
            .load(Ordering::Relaxed)
            .saturating_sub(s.dequeued.load(Ordering::Relaxed))
    }

    /// The most events the queue holds.
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// Whether shutdown has begun (every `try_enqueue` now fails).
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }

    pub fn enqueued(&self) -> u64 {
        self.shared.enqueued.load(Ordering::Relaxed)
    }

    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    pub fn write_errors(&self) -> u64 {
        self.shared.write_errors.load(Ordering::Relaxed)
    }

    pub fn abandoned(&self) -> u64 {
        self.shared.abandoned.load(Ordering::Relaxed)
    }

    /// All counters at once.
    pub fn stats(&self) -> WriterStats {
        WriterStats {
            enqueued: self.enqueued(),
            dropped: self.dropped(),
            delayed: self.shared.delayed.load(Ordering::Relaxed),
            written: self.written(),
            write_errors: self.write_errors(),
            abandoned: self.abandoned(),
            queue_depth: self.queue_depth(),
            batches: self.shared.batches.load(Ordering::Relaxed),
            batch_micros: self.shared.batch_micros.load(Ordering::Relaxed),
            ack_failures: self.shared.ack_failures.load(Ordering::Relaxed),
            failing: self.is_failing(),
        }
    }
}

/// Owns the writer thread. Call [`EventWriter::shutdown`] on graceful shutdown; dropping it
/// does the same, so events are not lost if a caller forgets.
pub struct EventWriter {
    queue: EventQueue,
    thread: Option<JoinHandle<()>>,
}

impl EventWriter {
    /// Starts the writer thread draining into `store`.
    ///
    /// A dedicated `std::thread` rather than `tokio::task::spawn_blocking`: the store's calls
    /// block (SQLite, or a sync PostgreSQL client), the writer lives as long as the process and
    /// would pin one of the runtime's blocking threads anyway, and owning the thread means
    /// shutdown can join it after Pingora's runtimes have stopped and tests need no runtime.
    pub fn start(store: Arc<dyn Store>, config: WriterConfig) -> std::io::Result<EventWriter> {
        let capacity = config.capacity.max(1); // 0 would make a rendezvous channel
        let (tx, rx) = mpsc::sync_channel(capacity);
        let shared = Arc::new(Shared {
            tx,
            capacity,
            closed: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            enqueued: AtomicU64::new(0),
            dequeued: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            delayed: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
            room: tokio::sync::Notify::new(),
            written: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            batch_micros: AtomicU64::new(0),
            ack_failures: AtomicU64::new(0),
            failing: AtomicBool::new(false),
        });
        let worker = Worker {
            rx,
            store,
            shared: Arc::clone(&shared),
            config: WriterConfig {
                batch_size: config.batch_size.max(1),
                ..config
            },
        };
        let thread = std::thread::Builder::new()
            .name("smproxy-event-writer".into())
            .spawn(move || worker.run())?;
        Ok(EventWriter {
            queue: EventQueue { shared },
            thread: Some(thread),
        })
    }

    /// A handle for the request path.
    pub fn queue(&self) -> EventQueue {
        self.queue.clone()
    }

    /// Stops accepting events, writes everything already accepted (retrying a failing store
    /// up to the configured bound), waits for the thread and returns the final counters.
    /// Blocking: from async code, call it inside `spawn_blocking`.
    pub fn shutdown(mut self) -> WriterStats {
        self.close();
        self.queue.stats()
    }

    fn close(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let s = &*self.queue.shared;
        s.closed.store(true, Ordering::SeqCst);
        // Producers waiting for room offer again now, and are refused.
        s.room.notify_waiters();
        // Producers stay in flight for a single `try_send`, so this spins a few times at most.
        while s.in_flight.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
        // A blocking send is fine here: the writer is draining, so room appears. It fails only
        // if the writer thread is already gone, and then there is nothing to stop.
        let _ = s.tx.send(Msg::Stop);
        if thread.join().is_err() {
            tracing::error!("event writer thread panicked; queued events were lost");
        }
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        self.close();
    }
}

struct Worker {
    rx: Receiver<Msg>,
    store: Arc<dyn Store>,
    shared: Arc<Shared>,
    config: WriterConfig,
}

impl Worker {
    /// Blocks for the first event, then takes whatever else is already queued (up to a batch)
    /// without waiting. If that is less than a full batch, it lingers (see [`Worker::linger`])
    /// and takes what arrived meanwhile: under load events pile up while the previous batch
    /// commits anyway, and at moderate traffic the linger turns one commit per event into one
    /// per few milliseconds. Sleeping rather than waiting on the channel matters: a writer
    /// blocked in `recv` would be woken by every single event (a syscall on the request path
    /// and a context switch each), which is the per-event cost the linger is there to avoid.
    ///
    /// No linger for a batch with an acknowledged event (`store.durability: strict`): its
    /// beacon is waiting for the commit, and strict commits are synced, so events arriving
    /// during one commit already form the next group without any waiting.
    fn run(self) {
        let mut batch: Vec<Event> = Vec::with_capacity(self.config.batch_size);
        let mut acks: Vec<AckSender> = Vec::new();
        loop {
            let mut stop = match self.rx.recv() {
                Ok(Msg::Event(e, ack)) => {
                    batch.push(*e);
                    acks.extend(ack);
                    false
                }
                Ok(Msg::Stop) | Err(_) => true,
            };
            stop = stop || self.drain(&mut batch, &mut acks);
            if !stop {
                stop = self.linger(&mut batch, &mut acks);
            }
            self.shared
                .dequeued
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            // The batch left the queue: producers waiting for room may offer again.
            if self.shared.waiting.load(Ordering::SeqCst) > 0 {
                self.shared.room.notify_waiters();
            }
            if !batch.is_empty() {
                self.write(&batch, &mut acks);
                batch.clear();
            }
            if stop {
                return;
            }
        }
    }

    /// Sleeps in `linger_step`s, taking what arrived after each, until the batch is full,
    /// holds an acknowledged event, a step brought nothing, or `linger` has passed; true when
    /// it met `Stop`.
    fn linger(&self, batch: &mut Vec<Event>, acks: &mut Vec<AckSender>) -> bool {
        let step = self.config.linger_step.max(Duration::from_micros(100));
        let mut left = self.config.linger;
        while !left.is_zero() && batch.len() < self.config.batch_size && acks.is_empty() {
            let nap = step.min(left);
            std::thread::sleep(nap);
            left -= nap;
            let before = batch.len();
            if self.drain(batch, acks) {
                return true;
            }
            if batch.len() == before {
                break;
            }
        }
        false
    }

    /// Takes what is queued without waiting, up to a full batch; true when it met `Stop`
    /// (or every sender is gone).
    fn drain(&self, batch: &mut Vec<Event>, acks: &mut Vec<AckSender>) -> bool {
        while batch.len() < self.config.batch_size {
            match self.rx.try_recv() {
                Ok(Msg::Event(e, ack)) => {
                    batch.push(*e);
                    acks.extend(ack);
                }
                Ok(Msg::Stop) | Err(TryRecvError::Disconnected) => return true,
                Err(TryRecvError::Empty) => return false,
            }
        }
        false
    }

    /// Writes one batch, retrying with exponential backoff. The queue keeps absorbing events
    /// meanwhile (and drops once full); after `max_retries` the batch is abandoned so one bad
    /// stretch cannot stall the writer forever. Retrying is safe because `insert_batch` is all
    /// or nothing.
    ///
    /// Acknowledgements are completed after the commit, or failed at the first failed write:
    /// a beacon waiting for one should not wait through the whole backoff.
    fn write(&self, batch: &[Event], acks: &mut Vec<AckSender>) {
        let s = &*self.shared;
        let mut backoff = self.config.retry_backoff;
        let mut retries = 0;
        loop {
            let started = std::time::Instant::now();
            match self.store.insert_batch(batch) {
                Ok(n) => {
                    s.written.fetch_add(n as u64, Ordering::Relaxed);
                    s.batches.fetch_add(1, Ordering::Relaxed);
                    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                    s.batch_micros.fetch_add(micros, Ordering::Relaxed);
                    s.failing.store(false, Ordering::Relaxed);
                    // A receiver gone (its request timed out or the client left) is fine.
                    for ack in acks.drain(..) {
                        let _ = ack.send(Ok(()));
                    }
                    return;
                }
                Err(err) => {
                    s.write_errors.fetch_add(1, Ordering::Relaxed);
                    s.failing.store(true, Ordering::Relaxed);
                    for ack in acks.drain(..) {
                        let _ = ack.send(Err(AckError::WriteFailed));
                    }
                    if retries >= self.config.max_retries {
                        s.abandoned.fetch_add(batch.len() as u64, Ordering::Relaxed);
                        tracing::error!(%err, events = batch.len(), retries, "abandoning event batch");
                        return;
                    }
                    tracing::warn!(%err, events = batch.len(), retry = retries + 1, "event batch failed; retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(self.config.max_backoff);
                    retries += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::store::{ContactId, EventKind, SqliteStore, StoreError};

    /// A real in-memory store that records the size of every batch it is given.
    struct Recording {
        inner: SqliteStore,
        batches: Mutex<Vec<usize>>,
    }

    impl Store for Recording {
        fn insert_batch(&self, events: &[Event]) -> Result<usize, StoreError> {
            self.batches.lock().unwrap().push(events.len());
            self.inner.insert_batch(events)
        }
        fn upsert_contact_by_email(&self, email: &str, now: i64) -> Result<ContactId, StoreError> {
            self.inner.upsert_contact_by_email(email, now)
        }
        fn link_visitor(&self, v: &str, c: &ContactId, now: i64) -> Result<u64, StoreError> {
            self.inner.link_visitor(v, c, now)
        }
        fn count_events(&self, site: Option<&str>) -> Result<u64, StoreError> {
            self.inner.count_events(site)
        }
        fn ping(&self) -> Result<(), StoreError> {
            self.inner.ping()
        }
        fn delete_older_than(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
            self.inner.delete_older_than(cutoff_ms)
        }
    }

    fn recording() -> Arc<Recording> {
        Arc::new(Recording {
            inner: SqliteStore::open_in_memory().unwrap(),
            batches: Mutex::new(Vec::new()),
        })
    }

    fn event(ts_ms: i64) -> Event {
        Event::new(
            EventKind::Pageview,
            ts_ms,
            "shop",
            "https://shop.example/",
            "/",
        )
    }

    fn lingering(linger: Duration) -> WriterConfig {
        WriterConfig {
            linger,
            ..WriterConfig::default()
        }
    }

    /// Events queued one after another while the writer holds its first one go into one
    /// transaction: the writer lingers instead of committing the first event alone.
    #[test]
    fn a_small_batch_waits_for_the_events_that_follow() {
        let store = recording();
        let writer = EventWriter::start(store.clone(), lingering(Duration::from_secs(1))).unwrap();
        let queue = writer.queue();
        for ts in 0..10 {
            assert!(queue.try_enqueue(event(ts)));
        }
        let stats = writer.shutdown();
        assert_eq!(stats.written, 10);
        assert_eq!(*store.batches.lock().unwrap(), [10]);
        assert_eq!(store.count_events(None).unwrap(), 10);
    }

    /// An event whose beacon awaits the commit (strict durability) is written without the
    /// linger: its acknowledgement comes long before a linger of a minute would end.
    #[test]
    fn an_acknowledged_event_is_not_held_back() {
        let store = recording();
        let writer = EventWriter::start(store.clone(), lingering(Duration::from_secs(60))).unwrap();
        let ack = writer.queue().try_enqueue_acked(event(1)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(ack.blocking_recv()));
        let answer = rx.recv_timeout(Duration::from_secs(30));
        assert_eq!(answer.expect("the ack waited for the linger"), Ok(Ok(())));
        assert_eq!(store.count_events(None).unwrap(), 1);
        writer.shutdown();
    }

    fn stepping(linger: Duration, linger_step: Duration) -> WriterConfig {
        WriterConfig {
            linger,
            linger_step,
            ..WriterConfig::default()
        }
    }

    /// Waits (up to 20 s) until the store holds `n` events.
    fn wait_for_events(store: &Recording, n: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while store.count_events(None).unwrap() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "{n} events never written"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A step that brings no event ends the linger: a lone event is written after one step,
    /// not after the whole linger (a minute here).
    #[test]
    fn a_quiet_step_ends_the_linger() {
        let store = recording();
        let config = stepping(Duration::from_secs(60), Duration::from_millis(20));
        let writer = EventWriter::start(store.clone(), config).unwrap();
        assert!(writer.queue().try_enqueue(event(1)));
        wait_for_events(&store, 1);
        assert_eq!(*store.batches.lock().unwrap(), [1]);
        writer.shutdown();
    }

    /// Events trickling in over several steps (one every 100 ms, steps of 400 ms) all join
    /// the batch that the first one opened.
    #[test]
    fn a_trickle_joins_one_batch_across_steps() {
        let store = recording();
        let config = stepping(Duration::from_secs(30), Duration::from_millis(400));
        let writer = EventWriter::start(store.clone(), config).unwrap();
        let queue = writer.queue();
        for ts in 0..8 {
            assert!(queue.try_enqueue(event(ts)));
            std::thread::sleep(Duration::from_millis(100));
        }
        wait_for_events(&store, 8);
        assert_eq!(*store.batches.lock().unwrap(), [8]);
        writer.shutdown();
    }

    /// However steady the stream, a batch is written once `linger` has passed: 1.5 s of events
    /// every 10 ms with a 300 ms linger make several batches, not one.
    #[test]
    fn the_linger_ends_after_its_length() {
        let store = recording();
        let config = stepping(Duration::from_millis(300), Duration::from_millis(50));
        let writer = EventWriter::start(store.clone(), config).unwrap();
        let queue = writer.queue();
        for ts in 0..150 {
            assert!(queue.try_enqueue(event(ts)));
            std::thread::sleep(Duration::from_millis(10));
        }
        let stats = writer.shutdown();
        assert_eq!(stats.written, 150);
        let batches = store.batches.lock().unwrap();
        assert!(batches.len() >= 3, "batches: {batches:?}");
    }

    /// Shutdown during a linger still writes everything that was accepted.
    #[test]
    fn shutdown_during_a_linger_writes_everything() {
        let store = recording();
        let writer =
            EventWriter::start(store.clone(), lingering(Duration::from_millis(200))).unwrap();
        let queue = writer.queue();
        assert!(queue.try_enqueue(event(1)));
        let stats = writer.shutdown();
        assert_eq!((stats.enqueued, stats.written), (1, 1));
        assert_eq!(store.count_events(None).unwrap(), 1);
    }

    /// A real in-memory store whose writes wait until the test opens its gate.
    struct Gated {
        inner: SqliteStore,
        open: Mutex<bool>,
        opened: std::sync::Condvar,
    }

    impl Gated {
        fn new() -> Arc<Gated> {
            Arc::new(Gated {
                inner: SqliteStore::open_in_memory().unwrap(),
                open: Mutex::new(false),
                opened: std::sync::Condvar::new(),
            })
        }

        fn open(&self) {
            *self.open.lock().unwrap() = true;
            self.opened.notify_all();
        }
    }

    impl Store for Gated {
        fn insert_batch(&self, events: &[Event]) -> Result<usize, StoreError> {
            // Opened by the test, or after 30 s, so that a failing test ends rather than
            // hanging in the writer's shutdown.
            let open = self.open.lock().unwrap();
            let wait = Duration::from_secs(30);
            drop(self.opened.wait_timeout_while(open, wait, |open| !*open));
            self.inner.insert_batch(events)
        }
        fn upsert_contact_by_email(&self, email: &str, now: i64) -> Result<ContactId, StoreError> {
            self.inner.upsert_contact_by_email(email, now)
        }
        fn link_visitor(&self, v: &str, c: &ContactId, now: i64) -> Result<u64, StoreError> {
            self.inner.link_visitor(v, c, now)
        }
        fn count_events(&self, site: Option<&str>) -> Result<u64, StoreError> {
            self.inner.count_events(site)
        }
        fn ping(&self) -> Result<(), StoreError> {
            self.inner.ping()
        }
        fn delete_older_than(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
            self.inner.delete_older_than(cutoff_ms)
        }
    }

    /// A writer stuck in its first write (one event) with a queue of two, both taken.
    fn full_queue(store: Arc<Gated>) -> (EventWriter, EventQueue) {
        let config = WriterConfig {
            capacity: 2,
            batch_size: 1,
            linger: Duration::ZERO,
            ..WriterConfig::default()
        };
        let writer = EventWriter::start(store, config).unwrap();
        let queue = writer.queue();
        assert!(queue.try_enqueue(event(1)));
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while queue.queue_depth() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer never took it"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(queue.try_enqueue(event(2)));
        assert!(queue.try_enqueue(event(3)));
        assert!(!queue.try_enqueue(event(4)), "the queue holds two");
        (writer, queue)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    /// A beacon's event that finds the queue full waits, and gets in as soon as the writer
    /// takes the next batch: slowed, not lost.
    #[test]
    fn a_full_queue_is_waited_on_until_the_writer_makes_room() {
        let store = Gated::new();
        let (writer, queue) = full_queue(store.clone());
        let rt = runtime();
        let waiting = rt.spawn({
            let queue = queue.clone();
            async move { queue.enqueue(event(5), Duration::from_secs(60)).await }
        });
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(100)).await });
        assert!(!waiting.is_finished(), "queued into a full queue");
        assert_eq!(queue.stats().delayed, 1);
        store.open();
        assert!(rt.block_on(waiting).unwrap(), "dropped after room was made");
        let stats = writer.shutdown();
        assert_eq!((stats.written, stats.dropped, stats.delayed), (4, 1, 1));
        assert_eq!(store.count_events(None).unwrap(), 4);
    }

    /// Room that does not come within the patience: the event is dropped and counted.
    #[test]
    fn a_queue_full_past_the_patience_drops() {
        let store = Gated::new();
        let (writer, queue) = full_queue(store.clone());
        let rt = runtime();
        let started = std::time::Instant::now();
        let queued = rt.block_on(queue.enqueue(event(5), Duration::from_millis(50)));
        assert!(!queued);
        assert!(started.elapsed() >= Duration::from_millis(50));
        let acked = rt.block_on(queue.enqueue_acked(event(6), Duration::from_millis(10)));
        assert!(acked.is_none());
        assert_eq!((queue.stats().dropped, queue.stats().delayed), (3, 2));
        store.open();
        let stats = writer.shutdown();
        assert_eq!(stats.written, 3);
    }
}
