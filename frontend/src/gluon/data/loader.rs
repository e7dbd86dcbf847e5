//! `DataLoader`: batches of a [`Dataset`], optionally shuffled and prefetched by background
//! threads.

use super::dataset::{Dataset, Sample, Transform};
use kiln_ir::{Error, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

/// What to do with the final samples that do not fill a whole batch (gluon's `last_batch`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LastBatch {
    /// Yield a smaller last batch (the default).
    #[default]
    Keep,
    /// Drop the incomplete last batch.
    Discard,
    /// Carry the leftover samples over to the start of the next epoch (the next iteration
    /// of the same loader).
    Rollover,
}

/// Iterates over a data set in mini-batches (gluon's `DataLoader`): each item is
/// `Result<(data_batch, label_batch)>`, the samples stacked along a new first axis.
///
/// ```
/// use kiln_frontend::gluon::data::{ArrayDataset, DataLoader, LastBatch};
/// use kiln_frontend::NDArray;
/// let x = NDArray::from_vec((0..10).map(|v| v as f32).collect(), [5, 2])?;
/// let y = NDArray::from_slice(&[0i32, 1, 2, 3, 4]);
/// let loader = DataLoader::new(ArrayDataset::new(x, y)?, 2).last_batch(LastBatch::Keep);
/// let sizes: Vec<usize> = loader
///     .iter()
///     .map(|b| b.map(|(d, _)| d.shape()[0]))
///     .collect::<Result<_, _>>()?;
/// assert_eq!(sizes, vec![2, 2, 1]);
/// # Ok::<(), kiln_frontend::Error>(())
/// ```
///
/// Shuffling draws its seed from [`crate::random`], so [`crate::random::seed`] makes the
/// order reproducible. With [`DataLoader::num_workers`] > 0, background threads build the
/// batches ahead of time; the batches and their order are exactly those of the
/// single-threaded loader.
pub struct DataLoader<D> {
    dataset: Arc<D>,
    batch_size: usize,
    shuffle: bool,
    last_batch: LastBatch,
    transform: Option<Transform>,
    num_workers: usize,
    prefetch: Option<usize>,
    /// Sample indices left over by the previous epoch under [`LastBatch::Rollover`].
    leftover: Mutex<Vec<usize>>,
}

impl<D: Dataset + 'static> DataLoader<D> {
    /// A loader of `dataset` in batches of `batch_size` (a size of 0 is treated as 1),
    /// unshuffled, keeping the last partial batch, single-threaded.
    pub fn new(dataset: D, batch_size: usize) -> Self {
        Self::from_arc(Arc::new(dataset), batch_size)
    }

    /// Like [`DataLoader::new`] over a shared data set.
    pub fn from_arc(dataset: Arc<D>, batch_size: usize) -> Self {
        DataLoader {
            dataset,
            batch_size: batch_size.max(1),
            shuffle: false,
            last_batch: LastBatch::Keep,
            transform: None,
            num_workers: 0,
            prefetch: None,
            leftover: Mutex::new(Vec::new()),
        }
    }

    /// Reshuffles the samples at the start of every epoch.
    pub fn shuffle(mut self, shuffle: bool) -> Self {
        self.shuffle = shuffle;
        self
    }

    /// How to treat the last incomplete batch.
    pub fn last_batch(mut self, last_batch: LastBatch) -> Self {
        self.last_batch = last_batch;
        self
    }

    /// Applies `transform` to every sample (an elementwise transform is applied once per
    /// batch; see [`Transform`]).
    pub fn transform(mut self, transform: Transform) -> Self {
        self.transform = Some(transform);
        self
    }

    /// Builds batches on `n` background threads (0, the default, builds them on the calling
    /// thread when asked for).
    pub fn num_workers(mut self, n: usize) -> Self {
        self.num_workers = n;
        self
    }

    /// With workers, how many finished batches may wait ahead of the consumer (default
    /// `2 * num_workers`, at least 1). Ignored without workers.
    pub fn prefetch(mut self, k: usize) -> Self {
        self.prefetch = Some(k);
        self
    }

    /// The data set.
    pub fn dataset(&self) -> &D {
        &self.dataset
    }

    /// The batch size.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The number of batches the next epoch yields.
    pub fn len(&self) -> usize {
        let n = self.dataset.len();
        let b = self.batch_size;
        match self.last_batch {
            LastBatch::Keep => n.div_ceil(b),
            LastBatch::Discard => n / b,
            LastBatch::Rollover => (n + lock(&self.leftover).len()) / b,
        }
    }

    /// True when the next epoch yields no batch.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One epoch: the batches in order. Under [`LastBatch::Rollover`] the leftover samples
    /// are recorded for the next epoch when the iterator is created.
    pub fn iter(&self) -> BatchIter<D> {
        let batches = Arc::new(self.plan_epoch());
        let source = BatchSource {
            dataset: Arc::clone(&self.dataset),
            transform: self.transform.clone(),
            batches: Arc::clone(&batches),
        };
        if self.num_workers == 0 || batches.is_empty() {
            return BatchIter {
                state: IterState::Inline { source, next: 0 },
                total: batches.len(),
            };
        }
        let capacity = self
            .prefetch
            .unwrap_or(2 * self.num_workers)
            .max(1)
            .max(self.num_workers);
        BatchIter {
            state: IterState::Workers(Prefetcher::start(source, self.num_workers, capacity)),
            total: batches.len(),
        }
    }

    /// The sample indices of each batch of the next epoch (gluon's `BatchSampler`).
    fn plan_epoch(&self) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..self.dataset.len()).collect();
        if self.shuffle {
            let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(crate::random::next_seed());
            order.shuffle(&mut rng);
        }
        let mut leftover = lock(&self.leftover);
        let mut all = std::mem::take(&mut *leftover);
        all.extend(order);
        let mut batches: Vec<Vec<usize>> =
            all.chunks(self.batch_size).map(<[usize]>::to_vec).collect();
        if batches.last().is_some_and(|b| b.len() < self.batch_size) {
            match self.last_batch {
                LastBatch::Keep => {}
                LastBatch::Discard => {
                    batches.pop();
                }
                LastBatch::Rollover => {
                    *leftover = batches.pop().unwrap_or_default();
                }
            }
        }
        batches
    }
}

impl<D: Dataset + 'static> IntoIterator for &DataLoader<D> {
    type Item = Result<Sample>;
    type IntoIter = BatchIter<D>;
    fn into_iter(self) -> BatchIter<D> {
        self.iter()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What builds batch `k` of an epoch.
struct BatchSource<D> {
    dataset: Arc<D>,
    transform: Option<Transform>,
    batches: Arc<Vec<Vec<usize>>>,
}

impl<D: Dataset> BatchSource<D> {
    fn build(&self, k: usize) -> Result<Sample> {
        let indices = self.batches.get(k).ok_or_else(|| {
            Error::invalid(
                "DataLoader",
                format!("batch {k} of {} requested", self.batches.len()),
            )
        })?;
        match &self.transform {
            Some(t) => t.apply_batch(&*self.dataset, indices),
            None => self.dataset.get_batch(indices),
        }
    }
}

/// The iterator over one epoch of a [`DataLoader`].
pub struct BatchIter<D> {
    state: IterState<D>,
    total: usize,
}

enum IterState<D> {
    Inline { source: BatchSource<D>, next: usize },
    Workers(Prefetcher),
}

impl<D: Dataset + 'static> Iterator for BatchIter<D> {
    type Item = Result<Sample>;

    fn next(&mut self) -> Option<Result<Sample>> {
        match &mut self.state {
            IterState::Inline { source, next } => {
                if *next >= self.total {
                    return None;
                }
                let k = *next;
                *next += 1;
                Some(source.build(k))
            }
            IterState::Workers(p) => p.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let done = match &self.state {
            IterState::Inline { next, .. } => *next,
            IterState::Workers(p) => p.next_to_yield,
        };
        let left = self.total.saturating_sub(done);
        (left, Some(left))
    }
}

impl<D: Dataset + 'static> ExactSizeIterator for BatchIter<D> {}

/// Shared state of the worker threads: which batch to build next, and how far the consumer
/// has read (workers stay at most `capacity` batches ahead of it).
struct Schedule {
    next_to_build: usize,
    consumed: usize,
    stop: bool,
}

/// Background threads building batches into a bounded channel; the consumer puts them back
/// in order.
struct Prefetcher {
    schedule: Arc<(Mutex<Schedule>, Condvar)>,
    results: Receiver<(usize, Result<Sample>)>,
    pending: BTreeMap<usize, Result<Sample>>,
    next_to_yield: usize,
    total: usize,
    workers: Vec<JoinHandle<()>>,
}

impl Prefetcher {
    fn start<D: Dataset + 'static>(
        source: BatchSource<D>,
        num_workers: usize,
        capacity: usize,
    ) -> Prefetcher {
        let total = source.batches.len();
        let source = Arc::new(source);
        let schedule = Arc::new((
            Mutex::new(Schedule {
                next_to_build: 0,
                consumed: 0,
                stop: false,
            }),
            Condvar::new(),
        ));
        let (tx, rx) = sync_channel(capacity);
        let workers = (0..num_workers)
            .map(|_| {
                let (source, schedule, tx) =
                    (Arc::clone(&source), Arc::clone(&schedule), tx.clone());
                std::thread::spawn(move || loop {
                    let k = {
                        let (m, cv) = &*schedule;
                        let mut s = lock(m);
                        while !s.stop
                            && s.next_to_build < total
                            && s.next_to_build >= s.consumed + capacity
                        {
                            s = cv.wait(s).unwrap_or_else(PoisonError::into_inner);
                        }
                        if s.stop || s.next_to_build >= total {
                            return;
                        }
                        s.next_to_build += 1;
                        s.next_to_build - 1
                    };
                    // A closed channel means the iterator was dropped: stop quietly.
                    if tx.send((k, source.build(k))).is_err() {
                        return;
                    }
                })
            })
            .collect();
        Prefetcher {
            schedule,
            results: rx,
            pending: BTreeMap::new(),
            next_to_yield: 0,
            total,
            workers,
        }
    }

    fn next(&mut self) -> Option<Result<Sample>> {
        if self.next_to_yield >= self.total {
            return None;
        }
        let k = self.next_to_yield;
        let item = loop {
            if let Some(item) = self.pending.remove(&k) {
                break item;
            }
            match self.results.recv() {
                Ok((j, item)) => {
                    self.pending.insert(j, item);
                }
                Err(_) => {
                    break Err(Error::invalid(
                        "DataLoader",
                        format!("the worker threads stopped before batch {k} was built"),
                    ))
                }
            }
        };
        self.next_to_yield += 1;
        let (m, cv) = &*self.schedule;
        lock(m).consumed = self.next_to_yield;
        cv.notify_all();
        Some(item)
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        {
            let (m, cv) = &*self.schedule;
            lock(m).stop = true;
            cv.notify_all();
        }
        // Unblock workers waiting on a full channel, then wait for them to finish their
        // current batch.
        while self.results.try_recv().is_ok() {}
        let (_, rx) = sync_channel(0);
        drop(std::mem::replace(&mut self.results, rx));
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
