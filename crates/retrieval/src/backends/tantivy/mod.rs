//! The embedded [`KeywordIndex`]: BM25 over one on-disk tantivy index shared by every store.
//!
//! Fields: `id` (i64, indexed + fast: delete-by-id and the tie-break), `store_id` and
//! `file_id` (raw strings), `text` (analyzed by [`analyzer`]: jieba, lowercase, stopwords,
//! English stemming), `attrs` (raw attribute terms, see [`filter`], so metadata filters run inside the
//! tantivy query instead of after it).
//!
//! The index directory belongs to one process: tantivy takes a writer lock on it at
//! [`TantivyKeywordIndex::open`] (a second opener gets [`IndexError::Unavailable`]) and keeps it
//! until the index is dropped.
//!
//! A file beside the index records the analyzer version it was built with; an index of
//! another version is emptied at open, and the knowledge layer's catch-up, which starts from
//! the empty index's checkpoint 0, rebuilds it from the chunk store.
//!
//! Blocking work (indexing, committing, searching: tantivy reads mmapped files and jieba cuts
//! the query) runs on tokio's blocking pool, so a slow disk never stalls the reactor.

mod analyzer;
mod filter;
mod stopwords;

use std::path::Path;
use std::sync::{Arc, Mutex};

use ::tantivy::collector::TopDocs;
use ::tantivy::directory::{Directory, INDEX_WRITER_LOCK, MmapDirectory};
use ::tantivy::query::{BooleanQuery, ConstScoreQuery, Occur, Query, TermQuery};
use ::tantivy::schema::{
    Field, INDEXED, IndexRecordOption, STRING, Schema, TextFieldIndexing, TextOptions,
};
use ::tantivy::{
    Index, IndexReader, IndexWriter, ReloadPolicy, SegmentReader, TantivyDocument, TantivyError,
    Term,
};
use async_trait::async_trait;

use crate::{Checkpoint, Filter, Hit, IndexError, IndexedChunk, KeywordIndex};

/// Memory the writer may buffer before flushing a segment (tantivy's minimum is 15 MB).
const WRITER_MEMORY_BYTES: usize = 64 * 1024 * 1024;

/// The file in the index directory that holds [`analyzer::ANALYZER_VERSION`].
const ANALYZER_FILE: &str = "landfall-analyzer-version";

/// The embedded BM25 keyword index. Cheap to share: wrap it in an `Arc`.
#[derive(Clone)]
pub struct TantivyKeywordIndex {
    inner: Arc<Inner>,
}

struct Inner {
    index: Index,
    reader: IndexReader,
    writer: Mutex<IndexWriter<TantivyDocument>>,
    fields: Fields,
}

#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    store_id: Field,
    file_id: Field,
    text: Field,
    attrs: Field,
}

impl std::fmt::Debug for TantivyKeywordIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TantivyKeywordIndex")
            .finish_non_exhaustive()
    }
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let id = builder.add_i64_field("id", INDEXED | ::tantivy::schema::FAST);
    let store_id = builder.add_text_field("store_id", STRING);
    let file_id = builder.add_text_field("file_id", STRING);
    let text_indexing = TextFieldIndexing::default()
        .set_tokenizer(analyzer::ANALYZER_NAME)
        .set_index_option(IndexRecordOption::WithFreqs);
    let text = builder.add_text_field(
        "text",
        TextOptions::default().set_indexing_options(text_indexing),
    );
    let attrs = builder.add_text_field("attrs", STRING);
    (
        builder.build(),
        Fields {
            id,
            store_id,
            file_id,
            text,
            attrs,
        },
    )
}

fn backend(error: TantivyError) -> IndexError {
    match error {
        TantivyError::LockFailure(..) => IndexError::Unavailable(error.to_string()),
        TantivyError::DataCorruption(_) | TantivyError::IncompatibleIndex(_) => {
            IndexError::Corrupt(error.to_string())
        }
        TantivyError::SchemaError(_) => IndexError::Corrupt(error.to_string()),
        other => IndexError::Backend(other.to_string()),
    }
}

fn poisoned<T>(_: T) -> IndexError {
    IndexError::Backend("the index writer lock is poisoned by an earlier panic".into())
}

impl TantivyKeywordIndex {
    /// Opens the index in `dir`, creating the directory and an empty index if needed, and
    /// takes the directory's writer lock.
    ///
    /// Blocks on file I/O (and, the first time in a process, ~100 ms loading jieba's
    /// dictionary): call it at start-up or from a blocking task.
    ///
    /// # Errors
    /// [`IndexError::Unavailable`] when another process (or handle) holds the lock or the
    /// directory cannot be created; [`IndexError::Corrupt`] when it holds an index of another
    /// schema or damaged files.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, IndexError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| {
            IndexError::Unavailable(format!("cannot create {}: {e}", dir.display()))
        })?;
        let open_directory = || {
            MmapDirectory::open(dir)
                .map_err(|e| IndexError::Unavailable(format!("cannot open {}: {e}", dir.display())))
        };
        discard_if_other_analyzer(dir, &open_directory()?)?;
        let directory = open_directory()?;
        let (schema, fields) = schema();
        let index = Index::open_or_create(directory, schema).map_err(backend)?;
        index
            .tokenizers()
            .register(analyzer::ANALYZER_NAME, analyzer::analyzer());
        let writer = index
            .writer_with_num_threads(1, WRITER_MEMORY_BYTES)
            .map_err(backend)?;
        std::fs::write(
            dir.join(ANALYZER_FILE),
            analyzer::ANALYZER_VERSION.to_string(),
        )
        .map_err(|e| IndexError::Unavailable(format!("cannot write in {}: {e}", dir.display())))?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(backend)?;
        Ok(Self {
            inner: Arc::new(Inner {
                index,
                reader,
                writer: Mutex::new(writer),
                fields,
            }),
        })
    }

    async fn blocking<T, F>(&self, work: F) -> Result<T, IndexError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, IndexError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(|e| IndexError::Backend(format!("keyword index task failed: {e}")))?
    }
}

/// Empties `dir` when it holds an index built by another analyzer version (or by one from
/// before versions were recorded), holding the writer lock so that an index another process
/// has open is never touched.
fn discard_if_other_analyzer(dir: &Path, directory: &MmapDirectory) -> Result<(), IndexError> {
    let has_index = dir.join("meta.json").is_file();
    let built_with = std::fs::read_to_string(dir.join(ANALYZER_FILE)).ok();
    let current = analyzer::ANALYZER_VERSION.to_string();
    if !has_index || built_with.as_deref().map(str::trim) == Some(current.as_str()) {
        return Ok(());
    }
    let _lock = directory
        .acquire_lock(&INDEX_WRITER_LOCK)
        .map_err(|e| IndexError::Unavailable(format!("{}: {e}", dir.display())))?;
    tracing::warn!(
        dir = %dir.display(),
        built_with = built_with.as_deref().unwrap_or("1").trim(),
        current = analyzer::ANALYZER_VERSION,
        "keyword index built by another analyzer version: emptying it to rebuild from the chunk store"
    );
    let lock_file = INDEX_WRITER_LOCK.filepath.clone();
    let unavailable =
        |e: std::io::Error| IndexError::Unavailable(format!("cannot empty {}: {e}", dir.display()));
    for entry in std::fs::read_dir(dir).map_err(unavailable)? {
        let path = entry.map_err(unavailable)?.path();
        if path.file_name() == Some(lock_file.as_os_str()) {
            continue;
        }
        if path.is_dir() {
            std::fs::remove_dir_all(&path).map_err(unavailable)?;
        } else {
            std::fs::remove_file(&path).map_err(unavailable)?;
        }
    }
    Ok(())
}

impl Inner {
    fn document(&self, chunk: &IndexedChunk) -> TantivyDocument {
        let fields = self.fields;
        let mut document = TantivyDocument::default();
        document.add_i64(fields.id, chunk.id);
        document.add_text(fields.store_id, &chunk.store_id);
        document.add_text(fields.file_id, &chunk.file_id);
        document.add_text(fields.text, &chunk.text);
        let attributes = super::filterable_attributes(chunk);
        for term in filter::attribute_terms(&attributes) {
            document.add_text(fields.attrs, &term);
        }
        document
    }

    fn store_term(&self, store_id: &str) -> Term {
        Term::from_field_text(self.fields.store_id, store_id)
    }

    fn search(
        &self,
        store_ids: &[String],
        query: &str,
        filter: Option<&Filter>,
        limit: usize,
    ) -> Result<Vec<Hit>, IndexError> {
        if limit == 0 || store_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut analyzer = analyzer::analyzer();
        let mut terms = analyzer::terms(&mut analyzer, query);
        terms.sort_unstable();
        terms.dedup();
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let text_query: Vec<(Occur, Box<dyn Query>)> = terms
            .iter()
            .map(|t| {
                let term = Term::from_field_text(self.fields.text, t);
                (
                    Occur::Should,
                    Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs)) as _,
                )
            })
            .collect();
        let stores: Vec<(Occur, Box<dyn Query>)> = store_ids
            .iter()
            .map(|s| {
                let term = self.store_term(s);
                (
                    Occur::Should,
                    Box::new(TermQuery::new(term, IndexRecordOption::Basic)) as _,
                )
            })
            .collect();
        // Store and filter clauses must match but must not move the BM25 score.
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![
            (Occur::Must, Box::new(BooleanQuery::new(text_query))),
            (
                Occur::Must,
                Box::new(ConstScoreQuery::new(
                    Box::new(BooleanQuery::new(stores)),
                    0.0,
                )),
            ),
        ];
        if let Some(filter) = filter {
            let compiled = filter::compile(self.fields.attrs, filter);
            clauses.push((Occur::Must, Box::new(ConstScoreQuery::new(compiled, 0.0))));
        }
        let query = BooleanQuery::new(clauses);
        // Sort by score, then by smaller id, so ties are ordered as the trait promises.
        let collector = TopDocs::with_limit(limit).tweak_score(|segment: &SegmentReader| {
            let ids = segment
                .fast_fields()
                .i64("id")
                .ok()
                .map(|c| c.first_or_default_col(0));
            move |doc, score| {
                let id = ids.as_ref().map_or(0, |ids| ids.get_val(doc));
                (score, std::cmp::Reverse(id))
            }
        });
        let searcher = self.reader.searcher();
        let top = searcher.search(&query, &collector).map_err(backend)?;
        Ok(top
            .into_iter()
            .map(|((score, std::cmp::Reverse(id)), _)| Hit { id, score })
            .collect())
    }
}

#[async_trait]
impl KeywordIndex for TantivyKeywordIndex {
    async fn add(&self, chunks: &[IndexedChunk]) -> Result<(), IndexError> {
        let chunks = chunks.to_vec();
        self.blocking(move |inner| {
            let writer = inner.writer.lock().map_err(poisoned)?;
            for chunk in &chunks {
                // Delete-then-add in one writer makes `add` idempotent by id: tantivy applies
                // a delete to every document added before it.
                writer.delete_term(Term::from_field_i64(inner.fields.id, chunk.id));
                writer
                    .add_document(inner.document(chunk))
                    .map_err(backend)?;
            }
            Ok(())
        })
        .await
    }

    async fn delete_file(&self, store_id: &str, file_id: &str) -> Result<(), IndexError> {
        let (store_id, file_id) = (store_id.to_string(), file_id.to_string());
        self.blocking(move |inner| {
            let store = TermQuery::new(inner.store_term(&store_id), IndexRecordOption::Basic);
            let file = TermQuery::new(
                Term::from_field_text(inner.fields.file_id, &file_id),
                IndexRecordOption::Basic,
            );
            let query = BooleanQuery::intersection(vec![Box::new(store), Box::new(file)]);
            let writer = inner.writer.lock().map_err(poisoned)?;
            writer.delete_query(Box::new(query)).map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn delete_store(&self, store_id: &str) -> Result<(), IndexError> {
        let store_id = store_id.to_string();
        self.blocking(move |inner| {
            let writer = inner.writer.lock().map_err(poisoned)?;
            writer.delete_term(inner.store_term(&store_id));
            Ok(())
        })
        .await
    }

    async fn commit(&self, checkpoint: Checkpoint) -> Result<(), IndexError> {
        self.blocking(move |inner| {
            let mut writer = inner.writer.lock().map_err(poisoned)?;
            let mut prepared = writer.prepare_commit().map_err(backend)?;
            prepared.set_payload(&checkpoint.to_string());
            prepared.commit().map_err(backend)?;
            drop(writer);
            inner.reader.reload().map_err(backend)
        })
        .await
    }

    async fn checkpoint(&self) -> Result<Checkpoint, IndexError> {
        self.blocking(|inner| {
            let metas = inner.index.load_metas().map_err(backend)?;
            match metas.payload {
                None => Ok(0),
                Some(payload) => payload.parse().map_err(|e| {
                    IndexError::Corrupt(format!("commit payload {payload:?} is no checkpoint: {e}"))
                }),
            }
        })
        .await
    }

    async fn search(
        &self,
        store_ids: &[String],
        query: &str,
        filter: Option<&Filter>,
        limit: usize,
    ) -> Result<Vec<Hit>, IndexError> {
        let (store_ids, query, filter) = (store_ids.to_vec(), query.to_string(), filter.cloned());
        self.blocking(move |inner| inner.search(&store_ids, &query, filter.as_ref(), limit))
            .await
    }
}

#[cfg(test)]
mod tests;
