//! The embedded [`VectorIndex`]: exact (flat) cosine search, in memory.
//!
//! # Why exact, and why in memory
//! Measured with `examples/vector_bench.rs` (release, 384-dim clustered unit vectors, 200
//! held-out queries, top 10) on the 2-core build machine while other builds ran (load ~4.5):
//!
//! | vectors | exact p50 / p99 | exact load | HNSW (`hnsw_rs`, M 16, ef_c 200) build | HNSW ef 64 p50 / p99, recall@10 | ef 128 |
//! |---|---|---|---|---|---|
//! | 10k | 0.65 / 5.0 ms | 0.06 s, 26 MiB | 58 s | 3.8 / 22 ms, 1.000 | 10.6 / 31 ms, 1.000 |
//! | 100k | 27 / 51 ms | 0.64 s, 205 MiB | 640 s | 1.6 / 6.3 ms, 0.992 | 2.1 / 7.6 ms, 0.9995 |
//!
//! Exact search is memory-bandwidth bound (a query streams every candidate's 1.5 KiB), has
//! recall 1.0, no build time, and costs nothing to keep in step with adds and deletes. Up to
//! ~50k vectors per searched store set it is far inside the 50 ms hybrid budget; at 100k its
//! p99 sat at the budget on a loaded 2-core machine with one thread, and is 8.6 ms (p50 5.6)
//! idle with the scan split over both cores (session 14). HNSW answers 100k in single-digit
//! milliseconds, but building it took over 10 minutes on 2 cores, which rules out rebuilding
//! it at start-up and would require persisting the graph with its checkpoint (`hnsw_rs` can
//! dump/reload files; deletes are not supported and need tombstones plus periodic rebuilds).
//! Decision: the embedded index is exact; deployments beyond ~100k chunks per query use the
//! pgvector or Qdrant backend (HNSW with persistence and deletes). `usearch` was not measured.
//!
//! The chunk store keeps every vector and is the source of truth, so this index is not
//! persisted: it opens empty (`checkpoint()` is 0) and `landfall-knowledge` replays the chunk
//! store into it at start. Loading 100k vectors takes 0.64 s, about what reading the same
//! 150 MB back from a snapshot file would, so a snapshot would buy little start-up time.
//!
//! # Layout
//! Vectors are normalized at `add` and kept in one contiguous arena; each store has its own
//! list of slots, so a search touches only the requested stores' vectors, and evaluates the
//! filter ([`Filter::matches`] over [`filterable_attributes`]) per candidate before the dot
//! product. Dot products run 8 lanes at a time, which the compiler turns into SIMD, and a
//! store's slots are scanned in parts of [`SLOTS_PER_TASK`] in parallel on the rayon pool.
//!
//! # Concurrency
//! Searches share a read lock on the committed state and run on tokio's blocking pool; `add`
//! and deletes only queue operations, and `commit` applies the queue under the write lock.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use rayon::prelude::*;
use serde_json::{Map, Value};

use super::filterable_attributes;
use crate::{Checkpoint, ChunkId, Filter, Hit, IndexError, IndexedChunk, VectorIndex};

/// Vectors one parallel search task scans (12 MiB at 384 dimensions).
const SLOTS_PER_TASK: usize = 8192;

/// The embedded exact vector index. Cheap to share: clones are handles to the same index.
#[derive(Clone, Default)]
pub struct FlatVectorIndex {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FlatVectorIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlatVectorIndex").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Inner {
    committed: RwLock<State>,
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    /// Dimensions fixed by the first accepted `add`, committed or not.
    dims: Option<usize>,
    operations: Vec<Operation>,
}

enum Operation {
    Add(Vec<Entry>),
    DeleteFile { store_id: String, file_id: String },
    DeleteStore { store_id: String },
}

/// A chunk ready for the arena: normalized vector and the attributes filters see.
struct Entry {
    id: ChunkId,
    store_id: String,
    file_id: String,
    attributes: Map<String, Value>,
    vector: Vec<f32>,
}

struct Slot {
    id: ChunkId,
    store_id: String,
    file_id: String,
    attributes: Map<String, Value>,
}

#[derive(Default)]
struct State {
    dims: usize,
    checkpoint: Checkpoint,
    /// `slots.len() * dims` floats; slot `i` owns `vectors[i * dims..(i + 1) * dims]`.
    vectors: Vec<f32>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    by_id: HashMap<ChunkId, usize>,
    by_store: HashMap<String, Vec<usize>>,
}

fn poisoned<T>(_: T) -> IndexError {
    IndexError::Backend("the vector index lock is poisoned by an earlier panic".into())
}

/// `vector / |vector|`, refusing empty, zero and non-finite vectors.
fn normalized(vector: &[f32]) -> Result<Vec<f32>, IndexError> {
    let norm = dot(vector, vector).sqrt();
    if vector.is_empty() || !norm.is_finite() || norm == 0.0 {
        return Err(IndexError::Invalid(
            "a vector must be non-empty, finite and not all zeros".into(),
        ));
    }
    Ok(vector.iter().map(|x| x / norm).collect())
}

/// The dot product, in 8 independent lanes so the compiler vectorizes it (a plain
/// `zip().map().sum()` is a serial chain of float additions it may not reorder).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 8;
    let mut sums = [0.0f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for lane in 0..LANES {
            sums[lane] += x[lane] * y[lane];
        }
    }
    sums.iter().sum::<f32>() + tail
}

/// Keeps the `limit` best hits: score descending, ties by id ascending.
struct TopK {
    limit: usize,
    heap: BinaryHeap<Reverse<(Score, Reverse<ChunkId>)>>,
}

#[derive(Clone, Copy, PartialEq)]
struct Score(f32);
impl Eq for Score {}
impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Score {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl TopK {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            heap: BinaryHeap::with_capacity(limit + 1),
        }
    }

    fn push(&mut self, id: ChunkId, score: f32) {
        let item = Reverse((Score(score), Reverse(id)));
        if self.heap.len() < self.limit {
            self.heap.push(item);
        } else if self.heap.peek().is_some_and(|worst| item < *worst) {
            self.heap.pop();
            self.heap.push(item);
        }
    }

    fn into_hits(self) -> Vec<Hit> {
        // Ascending `Reverse(...)` is best-first.
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|Reverse((Score(score), Reverse(id)))| Hit { id, score })
            .collect()
    }
}

impl State {
    fn apply(&mut self, operation: Operation) {
        match operation {
            Operation::Add(entries) => entries.into_iter().for_each(|e| self.insert(e)),
            Operation::DeleteFile { store_id, file_id } => {
                let Some(slots) = self.by_store.get_mut(&store_id) else {
                    return;
                };
                let mut removed = Vec::new();
                slots.retain(|&slot| {
                    let keep = self.slots[slot]
                        .as_ref()
                        .is_none_or(|s| s.file_id != file_id);
                    if !keep {
                        removed.push(slot);
                    }
                    keep
                });
                removed.into_iter().for_each(|slot| self.release(slot));
            }
            Operation::DeleteStore { store_id } => {
                let slots = self.by_store.remove(&store_id).unwrap_or_default();
                slots.into_iter().for_each(|slot| self.release(slot));
            }
        }
    }

    fn release(&mut self, slot: usize) {
        if let Some(old) = self.slots[slot].take() {
            self.by_id.remove(&old.id);
            self.free.push(slot);
        }
    }

    fn insert(&mut self, entry: Entry) {
        if self.dims == 0 {
            self.dims = entry.vector.len();
        }
        // Idempotent by id: a re-added chunk replaces its old copy (possibly in another store).
        if let Some(&old) = self.by_id.get(&entry.id) {
            let old_store = self.slots[old].as_ref().map(|s| s.store_id.clone());
            if let Some(list) = old_store.and_then(|store| self.by_store.get_mut(&store)) {
                list.retain(|&slot| slot != old);
            }
            self.release(old);
        }
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                self.vectors.resize(self.slots.len() * self.dims, 0.0);
                self.slots.len() - 1
            }
        };
        self.vectors[slot * self.dims..(slot + 1) * self.dims].copy_from_slice(&entry.vector);
        self.by_id.insert(entry.id, slot);
        self.by_store
            .entry(entry.store_id.clone())
            .or_default()
            .push(slot);
        self.slots[slot] = Some(Slot {
            id: entry.id,
            store_id: entry.store_id,
            file_id: entry.file_id,
            attributes: entry.attributes,
        });
    }

    fn search(
        &self,
        store_ids: &[String],
        query: &[f32],
        filter: Option<&Filter>,
        limit: usize,
    ) -> Vec<Hit> {
        let mut seen_stores: Vec<&str> = Vec::with_capacity(store_ids.len());
        let mut parts: Vec<&[usize]> = Vec::new();
        for store_id in store_ids {
            if seen_stores.contains(&store_id.as_str()) {
                continue;
            }
            seen_stores.push(store_id);
            if let Some(slots) = self.by_store.get(store_id) {
                parts.extend(slots.chunks(SLOTS_PER_TASK));
            }
        }
        // The scan is bound by memory bandwidth, which one core does not saturate: parts run
        // on the rayon pool, each keeping its own best `limit`, merged at the end.
        let scan = |slots: &[usize]| {
            let mut top = TopK::new(limit);
            for &slot in slots {
                let Some(meta) = &self.slots[slot] else {
                    continue;
                };
                if filter.is_some_and(|f| !f.matches(&meta.attributes)) {
                    continue;
                }
                let vector = &self.vectors[slot * self.dims..(slot + 1) * self.dims];
                top.push(meta.id, dot(vector, query));
            }
            top
        };
        let partial: Vec<TopK> = if parts.len() > 1 {
            parts.into_par_iter().map(scan).collect()
        } else {
            parts.into_iter().map(scan).collect()
        };
        let mut top = TopK::new(limit);
        for hit in partial.into_iter().flat_map(TopK::into_hits) {
            top.push(hit.id, hit.score);
        }
        top.into_hits()
    }

    fn memory_bytes(&self) -> usize {
        self.vectors.capacity() * size_of::<f32>()
            + self.slots.capacity() * size_of::<Option<Slot>>()
            + self.by_id.capacity() * (size_of::<ChunkId>() + size_of::<usize>())
            + self
                .by_store
                .values()
                .map(|v| v.capacity() * size_of::<usize>())
                .sum::<usize>()
    }
}

impl FlatVectorIndex {
    /// An empty index (dimensions are fixed by the first `add`).
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of committed vectors.
    pub fn len(&self) -> usize {
        self.inner
            .committed
            .read()
            .map_or(0, |state| state.by_id.len())
    }

    /// Whether no vector is committed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate heap bytes of the committed state (vectors and bookkeeping; attribute
    /// maps not counted).
    pub fn memory_bytes(&self) -> usize {
        self.inner
            .committed
            .read()
            .map_or(0, |state| state.memory_bytes())
    }

    /// [`VectorIndex::search`] on the calling thread (for benchmarks and callers already on
    /// a blocking thread).
    ///
    /// # Errors
    /// [`IndexError::Invalid`] when `vector`'s dimensions differ from the index's.
    pub fn search_blocking(
        &self,
        store_ids: &[String],
        vector: &[f32],
        filter: Option<&Filter>,
        limit: usize,
    ) -> Result<Vec<Hit>, IndexError> {
        let state = self.inner.committed.read().map_err(poisoned)?;
        if state.dims == 0 || limit == 0 {
            return Ok(Vec::new());
        }
        if vector.len() != state.dims {
            return Err(IndexError::Invalid(format!(
                "query vector has {} dimensions, the index {}",
                vector.len(),
                state.dims
            )));
        }
        let query = normalized(vector)?;
        Ok(state.search(store_ids, &query, filter, limit))
    }

    fn queue(&self, operation: Operation) -> Result<(), IndexError> {
        self.inner
            .pending
            .lock()
            .map_err(poisoned)?
            .operations
            .push(operation);
        Ok(())
    }
}

#[async_trait]
impl VectorIndex for FlatVectorIndex {
    async fn add(&self, chunks: &[IndexedChunk]) -> Result<(), IndexError> {
        let committed_dims = self.inner.committed.read().map_err(poisoned)?.dims;
        let mut pending = self.inner.pending.lock().map_err(poisoned)?;
        let mut dims = pending
            .dims
            .or((committed_dims > 0).then_some(committed_dims));
        let mut entries = Vec::with_capacity(chunks.len());
        for chunk in chunks {
            let expected = *dims.get_or_insert(chunk.vector.len());
            if chunk.vector.len() != expected {
                return Err(IndexError::Invalid(format!(
                    "chunk {} has a {}-dimension vector, the index {expected}",
                    chunk.id,
                    chunk.vector.len()
                )));
            }
            entries.push(Entry {
                id: chunk.id,
                store_id: chunk.store_id.clone(),
                file_id: chunk.file_id.clone(),
                attributes: filterable_attributes(chunk),
                vector: normalized(&chunk.vector)?,
            });
        }
        pending.dims = dims;
        pending.operations.push(Operation::Add(entries));
        Ok(())
    }

    async fn delete_file(&self, store_id: &str, file_id: &str) -> Result<(), IndexError> {
        self.queue(Operation::DeleteFile {
            store_id: store_id.to_string(),
            file_id: file_id.to_string(),
        })
    }

    async fn delete_store(&self, store_id: &str) -> Result<(), IndexError> {
        self.queue(Operation::DeleteStore {
            store_id: store_id.to_string(),
        })
    }

    async fn commit(&self, checkpoint: Checkpoint) -> Result<(), IndexError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            // Lock order everywhere: pending, then committed.
            let mut pending = inner.pending.lock().map_err(poisoned)?;
            let operations = std::mem::take(&mut pending.operations);
            let mut state = inner.committed.write().map_err(poisoned)?;
            operations
                .into_iter()
                .for_each(|operation| state.apply(operation));
            state.checkpoint = checkpoint;
            Ok(())
        })
        .await
        .map_err(|e| IndexError::Backend(format!("vector index task failed: {e}")))?
    }

    async fn checkpoint(&self) -> Result<Checkpoint, IndexError> {
        Ok(self.inner.committed.read().map_err(poisoned)?.checkpoint)
    }

    async fn search(
        &self,
        store_ids: &[String],
        vector: &[f32],
        filter: Option<&Filter>,
        limit: usize,
    ) -> Result<Vec<Hit>, IndexError> {
        let index = self.clone();
        let (store_ids, vector, filter) = (store_ids.to_vec(), vector.to_vec(), filter.cloned());
        tokio::task::spawn_blocking(move || {
            index.search_blocking(&store_ids, &vector, filter.as_ref(), limit)
        })
        .await
        .map_err(|e| IndexError::Backend(format!("vector index task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_the_naive_sum() {
        for len in [0, 1, 7, 8, 9, 384, 385] {
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos()).collect();
            let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - naive).abs() < 1e-4, "len {len}");
        }
    }

    #[test]
    fn top_k_orders_by_score_then_id() {
        let mut top = TopK::new(3);
        for (id, score) in [(5, 0.5), (1, 0.9), (4, 0.5), (3, 0.1), (2, 0.9)] {
            top.push(id, score);
        }
        let ids: Vec<ChunkId> = top.into_hits().iter().map(|h| h.id).collect();
        assert_eq!(ids, vec![1, 2, 4]);
    }

    #[test]
    fn zero_vectors_are_refused() {
        assert!(matches!(
            normalized(&[0.0, 0.0]),
            Err(IndexError::Invalid(_))
        ));
        assert!(matches!(normalized(&[]), Err(IndexError::Invalid(_))));
    }
}
