//! Knowledge bases: OpenAI's files and vector stores over Landfall's chunk store and
//! indexes. Uploads are stored whole; attaching a file to a store queues it for background
//! ingestion (parse, chunk in the embedding model's tokens, embed, store, index); searches
//! run BM25 and vector retrieval, fuse them and return hits with citation data.
//!
//! The chunk store (`landfall-storage`) is the source of truth. Indexes are derived from its
//! change log ([`sync`]); a file is `completed` only once the indexes hold it. This crate
//! knows neither HTTP nor SQL; the server maps its errors and checks key scopes.

mod caller;
mod embed;
mod error;
pub mod eval;
mod expiry;
mod ingest;
mod rerank;
mod search;
mod settings;
pub mod sync;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use landfall_config::{KnowledgeConfig, VectorIndexConfig};
use landfall_documents::Limits;
use landfall_retrieval::backends::tantivy::TantivyKeywordIndex;
use landfall_retrieval::backends::vectors::FlatVectorIndex;
use landfall_retrieval::{Hit, KeywordIndex, VectorIndex};
use landfall_storage::{
    BatchRecord, FileCounts, FileRecord, IngestStatus, KnowledgeStore, PageRequest, StoreError,
    StoreFileQuery, StoreFileRecord, VectorStoreRecord, now_millis,
};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};

pub use caller::Caller;
pub use embed::{Embedder, LocalEmbedder};
pub use error::KnowledgeError;
pub use expiry::is_expired;
pub use rerank::{LocalReranker, Reranker};
pub use search::{
    FusionMethod, RetrieverScore, Rewriter, SearchHit, SearchMode, SearchRequest, SearchResults,
};
pub use settings::{FileChunking, StoreSettings};

use ingest::{Job, Pipeline};
use sync::Indexes;

/// A vector store with its file counts and usage.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreView {
    pub record: VectorStoreRecord,
    pub settings: StoreSettings,
    pub counts: FileCounts,
    pub usage_bytes: u64,
}

/// What a new store is made of.
#[derive(Debug, Clone, Default)]
pub struct NewStore {
    pub name: String,
    pub metadata: Map<String, Value>,
    pub chunking: Option<FileChunking>,
    pub expires_after: Option<Value>,
    pub file_ids: Vec<String>,
}

/// A file to attach, with its attributes and chunking.
#[derive(Debug, Clone, Default)]
pub struct Attachment {
    pub file_id: String,
    pub attributes: Map<String, Value>,
    pub chunking: Option<FileChunking>,
}

/// The knowledge-base service shared by the HTTP API and the CLI.
pub struct Knowledge {
    store: Arc<dyn KnowledgeStore>,
    indexes: Arc<Indexes>,
    embedder: Option<Arc<dyn Embedder>>,
    rewriter: Option<Arc<dyn Rewriter>>,
    reranker: Option<Arc<dyn Reranker>>,
    config: KnowledgeConfig,
    queue: std::sync::Mutex<Option<mpsc::UnboundedSender<Job>>>,
    /// Jobs queued and not yet finished.
    pending: Arc<watch::Sender<usize>>,
    workers: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Knowledge {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Knowledge")
            .field("embedder", &self.embedder.as_ref().map(|e| e.model_id()))
            .finish_non_exhaustive()
    }
}

impl Knowledge {
    /// Opens the indexes the configuration names, brings them in line with the store,
    /// resumes ingestions a previous run left in progress and starts the workers.
    ///
    /// # Errors
    /// When an index cannot be opened or the store cannot be read.
    pub async fn open(
        config: &KnowledgeConfig,
        store: Arc<dyn KnowledgeStore>,
        embedder: Option<Arc<dyn Embedder>>,
        rewriter: Option<Arc<dyn Rewriter>>,
        reranker: Option<Arc<dyn Reranker>>,
    ) -> Result<Arc<Self>, KnowledgeError> {
        let keyword_dir = config.index_dir.join("keyword");
        let keyword: Arc<dyn KeywordIndex> = Arc::new(open_keyword(&keyword_dir).await?);
        let vector = match &embedder {
            Some(_) => Some(open_vector(config).await?),
            None => None,
        };
        let indexes = Arc::new(Indexes::new(keyword, vector).await?);
        let started = std::time::Instant::now();
        let checkpoint = indexes.catch_up(store.as_ref(), None).await?;
        tracing::info!(
            checkpoint,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "knowledge indexes in line with the chunk store"
        );
        let (sender, receiver) = mpsc::unbounded_channel();
        let pending = Arc::new(watch::Sender::new(0));
        let pipeline = Arc::new(Pipeline {
            store: store.clone(),
            indexes: indexes.clone(),
            embedder: embedder.clone(),
            limits: Limits {
                max_bytes: config.max_file_bytes,
                ..Limits::default()
            },
        });
        let mut workers =
            ingest::spawn_workers(pipeline, receiver, config.ingest_workers, pending.clone());
        workers.push(expiry::spawn_sweeper(store.clone(), indexes.clone()));
        let knowledge = Arc::new(Self {
            store,
            indexes,
            embedder,
            rewriter,
            reranker,
            config: config.clone(),
            queue: std::sync::Mutex::new(Some(sender)),
            pending,
            workers: std::sync::Mutex::new(workers),
        });
        knowledge.resume().await?;
        Ok(knowledge)
    }

    /// The embedding model, when one is configured.
    #[must_use]
    pub fn embedder(&self) -> Option<&Arc<dyn Embedder>> {
        self.embedder.as_ref()
    }

    /// Largest upload accepted, in bytes.
    #[must_use]
    pub fn max_file_bytes(&self) -> u64 {
        self.config.max_file_bytes
    }

    async fn resume(&self) -> Result<(), KnowledgeError> {
        let pending = self.store.pending_ingests(100_000).await?;
        if !pending.is_empty() {
            tracing::info!(
                files = pending.len(),
                "resuming ingestions left in progress"
            );
        }
        for file in pending {
            self.enqueue(&file.store_id, &file.file_id);
        }
        Ok(())
    }

    fn enqueue(&self, store_id: &str, file_id: &str) {
        let queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let Some(queue) = queue.as_ref() else { return };
        let job = Job {
            store_id: store_id.to_owned(),
            file_id: file_id.to_owned(),
        };
        if queue.send(job).is_ok() {
            self.pending.send_modify(|pending| *pending += 1);
        }
    }

    /// Waits until every queued ingestion has finished.
    pub async fn wait_idle(&self) {
        let mut pending = self.pending.subscribe();
        let _ = pending.wait_for(|pending| *pending == 0).await;
    }

    /// Stops taking new work and waits for the ingestions running now (queued ones resume at
    /// the next start).
    pub async fn shutdown(&self) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).take();
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|e| e.into_inner()));
        for worker in workers {
            worker.abort();
            let _ = worker.await;
        }
    }

    // ----- files -----

    /// Stores an uploaded file, to be deleted `expires_after_seconds` after now when given.
    ///
    /// # Errors
    /// [`KnowledgeError::Invalid`] for an empty or oversized file, a bad purpose or expiry.
    pub async fn upload_file(
        &self,
        tenant_id: &str,
        filename: &str,
        purpose: &str,
        content: &[u8],
        expires_after_seconds: Option<u64>,
    ) -> Result<FileRecord, KnowledgeError> {
        if content.is_empty() {
            return Err(KnowledgeError::invalid("file", "the file is empty"));
        }
        if content.len() as u64 > self.config.max_file_bytes {
            return Err(KnowledgeError::invalid(
                "file",
                format!(
                    "the file is {} bytes, over the limit of {} bytes",
                    content.len(),
                    self.config.max_file_bytes
                ),
            ));
        }
        let filename = filename.trim();
        if filename.is_empty() || filename.len() > 512 {
            return Err(KnowledgeError::invalid("file", "a file name is required"));
        }
        if purpose.trim().is_empty() {
            return Err(KnowledgeError::invalid("purpose", "purpose is required"));
        }
        let created_at = now_millis();
        let record = FileRecord {
            id: settings::new_id("file-"),
            tenant_id: tenant_id.to_owned(),
            filename: filename.to_owned(),
            purpose: purpose.to_owned(),
            bytes: content.len() as u64,
            sha256: hex::encode(Sha256::digest(content)),
            created_at,
            expires_at: expiry::file_expires_at(created_at, expires_after_seconds)?,
        };
        self.store.create_file(&record, content).await?;
        Ok(record)
    }

    /// The tenant's newest file with the same name and content, if any.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn find_same_file(
        &self,
        tenant_id: &str,
        filename: &str,
        content: &[u8],
    ) -> Result<Option<FileRecord>, KnowledgeError> {
        let digest = hex::encode(Sha256::digest(content));
        Ok(self.store.find_file(tenant_id, &digest, filename).await?)
    }

    /// An expired file is gone, even before the sweeper deletes it.
    ///
    /// # Errors
    /// [`KnowledgeError::NotFound`].
    pub async fn get_file(&self, tenant_id: &str, id: &str) -> Result<FileRecord, KnowledgeError> {
        self.store
            .get_file(tenant_id, id)
            .await?
            .filter(|file| !is_expired(file.expires_at, now_millis()))
            .ok_or_else(|| KnowledgeError::not_found("file", id))
    }

    /// # Errors
    /// When the store fails.
    pub async fn list_files(
        &self,
        tenant_id: &str,
        purpose: Option<&str>,
        page: &PageRequest,
        descending: bool,
    ) -> Result<Vec<FileRecord>, KnowledgeError> {
        let now = now_millis();
        let mut files = self
            .store
            .list_files(tenant_id, purpose, page, descending)
            .await?;
        files.retain(|file| !is_expired(file.expires_at, now));
        Ok(files)
    }

    /// # Errors
    /// [`KnowledgeError::NotFound`].
    pub async fn file_content(&self, tenant_id: &str, id: &str) -> Result<Vec<u8>, KnowledgeError> {
        self.get_file(tenant_id, id).await?;
        self.store
            .file_content(tenant_id, id)
            .await?
            .ok_or_else(|| KnowledgeError::not_found("file", id))
    }

    /// Deletes a file everywhere: its bytes, its attachments and its chunks in every index.
    ///
    /// # Errors
    /// [`KnowledgeError::NotFound`].
    pub async fn delete_file(&self, tenant_id: &str, id: &str) -> Result<(), KnowledgeError> {
        self.store
            .delete_file(tenant_id, id)
            .await?
            .ok_or_else(|| KnowledgeError::not_found("file", id))?;
        self.indexes.catch_up(self.store.as_ref(), None).await?;
        Ok(())
    }

    /// Deletes every file expired at `now` (the sweeper does this every minute); returns
    /// how many.
    ///
    /// # Errors
    /// When the store or an index fails.
    pub async fn sweep_expired(&self, now: i64) -> Result<usize, KnowledgeError> {
        expiry::sweep(self.store.as_ref(), &self.indexes, now).await
    }

    // ----- vector stores -----

    /// Creates a store and attaches `file_ids`.
    ///
    /// # Errors
    /// [`KnowledgeError::NotFound`] for a file that does not exist.
    pub async fn create_store(
        &self,
        tenant_id: &str,
        new: NewStore,
    ) -> Result<StoreView, KnowledgeError> {
        for file_id in &new.file_ids {
            self.get_file(tenant_id, file_id).await?;
        }
        if let Some(expires_after) = &new.expires_after {
            expiry::store_days(expires_after)?;
        }
        let default = self.config.chunking;
        let settings = StoreSettings {
            chunking: new.chunking.unwrap_or(FileChunking {
                max_tokens: default.max_tokens,
                overlap_tokens: default.overlap_tokens,
            }),
            embedding_model: self.embedder.as_ref().map(|e| e.model_id().to_owned()),
            expires_after: new.expires_after,
        };
        let now = now_millis();
        let record = VectorStoreRecord {
            id: settings::new_id("vs_"),
            tenant_id: tenant_id.to_owned(),
            name: new.name,
            metadata: new.metadata,
            settings: settings.to_value(),
            created_at: now,
            last_active_at: now,
            expires_at: expiry::store_expires_at(settings.expires_after.as_ref(), now),
        };
        self.store.create_vector_store(&record).await?;
        for file_id in new.file_ids {
            let attachment = Attachment {
                file_id,
                ..Attachment::default()
            };
            self.attach(tenant_id, &record.id, attachment, None).await?;
        }
        self.get_store(tenant_id, &record.id).await
    }

    /// # Errors
    /// [`KnowledgeError::NotFound`].
    pub async fn get_store(&self, tenant_id: &str, id: &str) -> Result<StoreView, KnowledgeError> {
        let record = self.store_record(tenant_id, id).await?;
        self.view(record).await
    }

    /// The store's record without its file counts and usage, for callers that only need it
    /// to exist (scope checks, the request path).
    ///
    /// # Errors
    /// [`KnowledgeError::NotFound`].
    pub async fn store_record(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<VectorStoreRecord, KnowledgeError> {
        self.store
            .get_vector_store(tenant_id, id)
            .await?
            .ok_or_else(|| KnowledgeError::not_found("vector store", id))
    }

    async fn view(&self, record: VectorStoreRecord) -> Result<StoreView, KnowledgeError> {
        let (counts, usage_bytes) = self.store.store_usage(&record.id).await?;
        let settings = self.settings_of(&record);
        Ok(StoreView {
            record,
            settings,
            counts,
            usage_bytes,
        })
    }

    fn settings_of(&self, record: &VectorStoreRecord) -> StoreSettings {
        StoreSettings::from_value(&record.settings).unwrap_or(StoreSettings {
            chunking: FileChunking {
                max_tokens: self.config.chunking.max_tokens,
                overlap_tokens: self.config.chunking.overlap_tokens,
            },
            embedding_model: None,
            expires_after: None,
        })
    }

    /// # Errors
    /// When the store fails.
    pub async fn list_stores(
        &self,
        tenant_id: &str,
        page: &PageRequest,
        descending: bool,
    ) -> Result<Vec<StoreView>, KnowledgeError> {
        let records = self
            .store
            .list_vector_stores(tenant_id, page, descending)
            .await?;
        let mut views = Vec::with_capacity(records.len());
        for record in records {
            views.push(self.view(record).await?);
        }
        Ok(views)
    }

    /// Finds a store by id or, failing that, by name (the newest of that name).
    ///
    /// # Errors
    /// When the store fails.
    pub async fn find_store(
        &self,
        tenant_id: &str,
        id_or_name: &str,
    ) -> Result<Option<VectorStoreRecord>, KnowledgeError> {
        if let Some(record) = self.store.get_vector_store(tenant_id, id_or_name).await? {
            return Ok(Some(record));
        }
        let mut page = PageRequest {
            after: None,
            limit: 1000,
        };
        loop {
            let records = self
                .store
                .list_vector_stores(tenant_id, &page, true)
                .await?;
            let Some(last) = records.last().map(|record| record.id.clone()) else {
                return Ok(None);
            };
            if let Some(record) = records.into_iter().find(|r| r.name == id_or_name) {
                return Ok(Some(record));
            }
            page.after = Some(last);
        }
    }

    /// Changes name, metadata and expiry.
    ///
    /// # Errors
    /// [`KnowledgeError::NotFound`].
    pub async fn update_store(
        &self,
        tenant_id: &str,
        id: &str,
        name: Option<String>,
        metadata: Option<Map<String, Value>>,
        expires_after: Option<Option<Value>>,
    ) -> Result<StoreView, KnowledgeError> {
        let mut record = self.store_record(tenant_id, id).await?;
        let mut settings = self.settings_of(&record);
        if let Some(name) = name {
            record.name = name;
        }
        if let Some(metadata) = metadata {
            record.metadata = metadata;
        }
        if let Some(expires_after) = expires_after {
            if let Some(expires_after) = &expires_after {
                expiry::store_days(expires_after)?;
            }
            settings.expires_after = expires_after;
        }
        record.settings = settings.to_value();
        record.last_active_at = now_millis();
        record.expires_at =
            expiry::store_expires_at(settings.expires_after.as_ref(), record.last_active_at);
        if !self.store.update_vector_store(&record).await? {
            return Err(KnowledgeError::not_found("vector store", id));
        }
        self.view(record).await
    }

    /// Deletes a store and its chunks from every index (the files stay).
    ///
    /// # Errors
    /// [`KnowledgeError::NotFound`].
    pub async fn delete_store(&self, tenant_id: &str, id: &str) -> Result<(), KnowledgeError> {
        if !self.store.delete_vector_store(tenant_id, id).await? {
            return Err(KnowledgeError::not_found("vector store", id));
        }
        self.indexes.catch_up(self.store.as_ref(), None).await?;
        Ok(())
    }

    // ----- files of a store -----

    /// Attaches a file and queues its ingestion.
    ///
    /// # Errors
    /// [`KnowledgeError::NotFound`] for a missing store or file, [`KnowledgeError::Conflict`]
    /// when it is attached already.
    pub async fn attach(
        &self,
        tenant_id: &str,
        store_id: &str,
        attachment: Attachment,
        batch_id: Option<&str>,
    ) -> Result<StoreFileRecord, KnowledgeError> {
        let settings = self.settings_of(&self.store_record(tenant_id, store_id).await?);
        self.get_file(tenant_id, &attachment.file_id).await?;
        check_attributes(&attachment.attributes)?;
        let now = now_millis();
        let record = StoreFileRecord {
            store_id: store_id.to_owned(),
            file_id: attachment.file_id.clone(),
            tenant_id: tenant_id.to_owned(),
            batch_id: batch_id.map(str::to_owned),
            status: IngestStatus::InProgress,
            last_error: None,
            attributes: attachment.attributes,
            chunking: attachment.chunking.unwrap_or(settings.chunking).to_value(),
            usage_bytes: 0,
            chunk_count: 0,
            created_at: now,
            updated_at: now,
        };
        match self.store.attach_file(&record).await {
            Ok(()) => {}
            Err(StoreError::Conflict { .. }) => {
                return Err(KnowledgeError::Conflict {
                    message: format!(
                        "file `{}` is already attached to vector store `{store_id}`",
                        record.file_id
                    ),
                });
            }
            Err(error) => return Err(error.into()),
        }
        self.enqueue(store_id, &record.file_id);
        Ok(record)
    }

    /// # Errors
    /// [`KnowledgeError::NotFound`].
    pub async fn get_store_file(
        &self,
        tenant_id: &str,
        store_id: &str,
        file_id: &str,
    ) -> Result<StoreFileRecord, KnowledgeError> {
        self.store_record(tenant_id, store_id).await?;
        self.store
            .get_store_file(store_id, file_id)
            .await?
            .ok_or_else(|| KnowledgeError::not_found("vector store file", file_id))
    }

    /// # Errors
    /// [`KnowledgeError::NotFound`] for a missing store.
    pub async fn list_store_files(
        &self,
        tenant_id: &str,
        store_id: &str,
        query: &StoreFileQuery,
    ) -> Result<Vec<StoreFileRecord>, KnowledgeError> {
        self.store_record(tenant_id, store_id).await?;
        Ok(self.store.list_store_files(store_id, query).await?)
    }

    /// Replaces a file's attributes; indexes take them at once.
    ///
    /// # Errors
    /// [`KnowledgeError::NotFound`].
    pub async fn update_attributes(
        &self,
        tenant_id: &str,
        store_id: &str,
        file_id: &str,
        attributes: Map<String, Value>,
    ) -> Result<StoreFileRecord, KnowledgeError> {
        check_attributes(&attributes)?;
        let mut record = self.get_store_file(tenant_id, store_id, file_id).await?;
        record.attributes = attributes;
        record.updated_at = now_millis();
        if !self.store.update_store_file(&record).await? {
            return Err(KnowledgeError::not_found("vector store file", file_id));
        }
        let seq = self.store.mark_changed(store_id, file_id).await?;
        self.indexes
            .catch_up(self.store.as_ref(), Some(seq))
            .await?;
        Ok(record)
    }

    /// Detaches a file from a store and removes its chunks (the file stays).
    ///
    /// # Errors
    /// [`KnowledgeError::NotFound`].
    pub async fn detach(
        &self,
        tenant_id: &str,
        store_id: &str,
        file_id: &str,
    ) -> Result<(), KnowledgeError> {
        self.store_record(tenant_id, store_id).await?;
        if !self.store.detach_file(store_id, file_id).await? {
            return Err(KnowledgeError::not_found("vector store file", file_id));
        }
        self.indexes.catch_up(self.store.as_ref(), None).await?;
        Ok(())
    }

    /// The chunks of an attached file, in order (Landfall's extension for checking chunking).
    ///
    /// # Errors
    /// [`KnowledgeError::NotFound`].
    pub async fn file_chunks(
        &self,
        tenant_id: &str,
        store_id: &str,
        file_id: &str,
    ) -> Result<Vec<landfall_storage::StoredChunk>, KnowledgeError> {
        self.get_store_file(tenant_id, store_id, file_id).await?;
        Ok(self.store.file_chunks(store_id, file_id).await?)
    }

    // ----- batches -----

    /// Attaches several files as one batch.
    ///
    /// # Errors
    /// [`KnowledgeError::NotFound`] when the store or any file is missing (then nothing is
    /// attached), [`KnowledgeError::Invalid`] for an empty batch.
    pub async fn create_batch(
        &self,
        tenant_id: &str,
        store_id: &str,
        files: Vec<Attachment>,
    ) -> Result<(BatchRecord, FileCounts), KnowledgeError> {
        if files.is_empty() {
            return Err(KnowledgeError::invalid(
                "file_ids",
                "file_ids must not be empty",
            ));
        }
        self.store_record(tenant_id, store_id).await?;
        for file in &files {
            self.get_file(tenant_id, &file.file_id).await?;
            check_attributes(&file.attributes)?;
        }
        let batch = BatchRecord {
            id: settings::new_id("vsfb_"),
            store_id: store_id.to_owned(),
            tenant_id: tenant_id.to_owned(),
            created_at: now_millis(),
            cancelled: false,
        };
        self.store.create_batch(&batch).await?;
        for file in files {
            match self
                .attach(tenant_id, store_id, file, Some(&batch.id))
                .await
            {
                Ok(_) | Err(KnowledgeError::Conflict { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        self.get_batch(tenant_id, store_id, &batch.id).await
    }

    /// # Errors
    /// [`KnowledgeError::NotFound`].
    pub async fn get_batch(
        &self,
        tenant_id: &str,
        store_id: &str,
        batch_id: &str,
    ) -> Result<(BatchRecord, FileCounts), KnowledgeError> {
        self.store_record(tenant_id, store_id).await?;
        self.store
            .get_batch(store_id, batch_id)
            .await?
            .ok_or_else(|| KnowledgeError::not_found("file batch", batch_id))
    }

    /// Cancels the files of a batch not ingested yet.
    ///
    /// # Errors
    /// [`KnowledgeError::NotFound`].
    pub async fn cancel_batch(
        &self,
        tenant_id: &str,
        store_id: &str,
        batch_id: &str,
    ) -> Result<(BatchRecord, FileCounts), KnowledgeError> {
        self.store_record(tenant_id, store_id).await?;
        if !self.store.cancel_batch(store_id, batch_id).await? {
            return Err(KnowledgeError::not_found("file batch", batch_id));
        }
        self.get_batch(tenant_id, store_id, batch_id).await
    }

    // ----- search -----

    /// Searches stores of one tenant.
    ///
    /// # Errors
    /// [`KnowledgeError::NotFound`] for a missing store, [`KnowledgeError::Invalid`] for an
    /// empty query or a vector search without embeddings, [`KnowledgeError::Unsupported`]
    /// for HyDE or rewrites without a rewrite model.
    pub async fn search(
        &self,
        caller: &Caller,
        store_ids: &[String],
        request: &SearchRequest,
    ) -> Result<SearchResults, KnowledgeError> {
        let tenant_id = caller.tenant_id.as_str();
        if request.query.trim().is_empty() {
            return Err(KnowledgeError::invalid("query", "query must not be empty"));
        }
        if request.max_results == 0 || request.max_results > 50 {
            return Err(KnowledgeError::invalid(
                "max_num_results",
                "max_num_results must be between 1 and 50",
            ));
        }
        let mut embedded = true;
        let now = now_millis();
        for store_id in store_ids {
            let record = self.store_record(tenant_id, store_id).await?;
            expiry::check_store(&record, now)?;
            let settings = self.settings_of(&record);
            if now - record.last_active_at >= expiry::TOUCH_INTERVAL_MS {
                self.touch(record, &settings, now).await?;
            }
            embedded &= settings.embedding_model.is_some()
                && settings.embedding_model.as_deref()
                    == self.embedder.as_ref().map(|e| e.model_id());
        }
        let use_vectors = match request.mode {
            SearchMode::Keyword => false,
            SearchMode::Hybrid => embedded,
            SearchMode::Vector if embedded => true,
            SearchMode::Vector => {
                return Err(KnowledgeError::invalid(
                    "ranking_options.mode",
                    "vector search needs stores embedded with the configured embedding model",
                ));
            }
        };
        let use_keywords = request.mode != SearchMode::Vector;
        // Another replica may have ingested since this one last looked.
        let latest = self.store.last_change().await?;
        if self.indexes.checkpoint().await < latest {
            self.indexes
                .catch_up(self.store.as_ref(), Some(latest))
                .await?;
        }

        let rewriter = self.rewriter.as_deref();
        let queries = search::plan_queries(request, rewriter, caller).await?;
        let limit = search::candidates(request.max_results);
        let filter = request.filter.as_ref();
        let mut keyword_lists = Vec::new();
        let mut vector_lists = Vec::new();
        if use_keywords {
            for query in &queries {
                let mut hits = self
                    .indexes
                    .keyword
                    .search(store_ids, query, filter, limit)
                    .await?;
                if !use_vectors {
                    search::relative(&mut hits);
                }
                keyword_lists.push(hits);
            }
        }
        if use_vectors {
            vector_lists = self
                .vector_search(caller, store_ids, request, &queries, limit)
                .await?;
        }
        // A reranker reads more candidates than asked for; the threshold then applies to its
        // scores, not the fused ones.
        let reranker = self.reranker.as_ref().filter(|_| request.rerank);
        let (threshold, limit) = match reranker {
            Some(reranker) => (0.0, reranker.candidates().max(request.max_results)),
            None => (request.score_threshold, request.max_results),
        };
        let fused = search::fuse(
            &keyword_lists,
            &vector_lists,
            request.fusion,
            threshold,
            limit,
        );
        let mut hits = self.hydrate(tenant_id, fused).await?;
        if let Some(reranker) = reranker {
            rerank::rerank(reranker.as_ref(), request, &mut hits).await?;
        }
        Ok(SearchResults { queries, hits })
    }

    /// Records that a store was used at `now`, moving its expiry along.
    async fn touch(
        &self,
        mut record: VectorStoreRecord,
        settings: &StoreSettings,
        now: i64,
    ) -> Result<(), KnowledgeError> {
        record.last_active_at = now;
        record.expires_at = expiry::store_expires_at(settings.expires_after.as_ref(), now);
        self.store.update_vector_store(&record).await?;
        Ok(())
    }

    async fn vector_search(
        &self,
        caller: &Caller,
        store_ids: &[String],
        request: &SearchRequest,
        queries: &[String],
        limit: usize,
    ) -> Result<Vec<Vec<Hit>>, KnowledgeError> {
        let (Some(embedder), Some(index)) = (&self.embedder, &self.indexes.vector) else {
            return Ok(Vec::new());
        };
        let mut texts = queries.to_vec();
        if request.hyde
            && let Some(rewriter) = self.rewriter.as_deref()
        {
            texts.push(search::hypothetical_answer(rewriter, &request.query, caller).await?);
        }
        let mut vectors = embedder.embed(texts, caller).await?;
        if request.hyde && vectors.len() > queries.len() {
            let passage = vectors.pop().unwrap_or_default();
            if let Some(first) = vectors.first_mut() {
                *first = search::combine(first, &passage);
            }
        }
        let mut lists = Vec::with_capacity(vectors.len());
        for vector in &vectors {
            lists.push(
                index
                    .search(store_ids, vector, request.filter.as_ref(), limit)
                    .await?,
            );
        }
        Ok(lists)
    }

    async fn hydrate(
        &self,
        tenant_id: &str,
        fused: Vec<search::Fused>,
    ) -> Result<Vec<SearchHit>, KnowledgeError> {
        let ids: Vec<i64> = fused.iter().map(|(hit, ..)| hit.id).collect();
        let mut chunks = search::by_id(self.store.chunks_by_id(&ids).await?, |c| c.id);
        let mut filenames: HashMap<String, String> = HashMap::new();
        let mut hits = Vec::with_capacity(fused.len());
        for (hit, keyword, vector) in fused {
            // A chunk removed since the index answered is left out.
            let Some(stored) = chunks.remove(&hit.id) else {
                continue;
            };
            if !filenames.contains_key(&stored.file_id) {
                let name = match self.store.get_file(tenant_id, &stored.file_id).await? {
                    Some(file) => file.filename,
                    None => continue,
                };
                filenames.insert(stored.file_id.clone(), name);
            }
            let filename = filenames.get(&stored.file_id).cloned().unwrap_or_default();
            let score_of = |ranked: Option<landfall_retrieval::fusion::Ranked>| {
                ranked.map(|ranked| RetrieverScore {
                    rank: ranked.rank,
                    score: ranked.score,
                })
            };
            hits.push(SearchHit {
                chunk_id: stored.id,
                store_id: stored.store_id,
                file_id: stored.file_id,
                filename,
                score: hit.score.clamp(0.0, 1.0),
                keyword: score_of(keyword),
                vector: score_of(vector),
                rerank_score: None,
                text: stored.chunk.text,
                page: stored.chunk.page,
                char_start: stored.chunk.char_start,
                char_end: stored.chunk.char_end,
                heading_path: stored.chunk.heading_path,
                attributes: stored.attributes,
            });
        }
        Ok(hits)
    }
}

/// OpenAI's limits on attributes: at most 16 keys of up to 64 characters, values strings (up
/// to 512 characters), numbers or booleans.
fn check_attributes(attributes: &Map<String, Value>) -> Result<(), KnowledgeError> {
    if attributes.len() > 16 {
        return Err(KnowledgeError::invalid(
            "attributes",
            "attributes may have at most 16 keys",
        ));
    }
    for (key, value) in attributes {
        if key.is_empty() || key.chars().count() > 64 {
            return Err(KnowledgeError::invalid(
                "attributes",
                "attribute keys must be 1 to 64 characters",
            ));
        }
        match value {
            Value::String(text) if text.chars().count() <= 512 => {}
            Value::Number(_) | Value::Bool(_) => {}
            _ => {
                return Err(KnowledgeError::invalid(
                    "attributes",
                    format!(
                        "attribute `{key}` must be a string of at most 512 characters, a number or a boolean"
                    ),
                ));
            }
        }
    }
    Ok(())
}

async fn open_keyword(dir: &Path) -> Result<TantivyKeywordIndex, KnowledgeError> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || TantivyKeywordIndex::open(&dir))
        .await
        .map_err(|error| KnowledgeError::Unavailable(error.to_string()))?
        .map_err(KnowledgeError::from)
}

async fn open_vector(config: &KnowledgeConfig) -> Result<Arc<dyn VectorIndex>, KnowledgeError> {
    Ok(match &config.vector_index {
        VectorIndexConfig::Embedded => Arc::new(FlatVectorIndex::new()),
        VectorIndexConfig::Pgvector { url, table_prefix } => Arc::new(
            landfall_retrieval::backends::pgvector::PgVectorIndex::open(url.expose(), table_prefix)
                .await?,
        ),
        VectorIndexConfig::Chroma { url, collection } => {
            let options = landfall_retrieval::backends::chroma::ChromaOptions::new(url, collection);
            Arc::new(landfall_retrieval::backends::chroma::ChromaIndex::open(options).await?)
        }
        VectorIndexConfig::Qdrant {
            url,
            api_key,
            collection,
        } => Arc::new(
            landfall_retrieval::backends::qdrant::QdrantIndex::open(
                url,
                api_key.as_ref().map(|key| key.expose().to_owned()),
                collection,
                std::time::Duration::from_secs(30),
            )
            .await?,
        ),
    })
}
