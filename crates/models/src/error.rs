use std::path::PathBuf;

/// Why a model could not be loaded, fetched or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The model folder does not exist or is not a folder.
    #[error("model folder {path} does not exist or is not a folder")]
    ModelDirNotFound {
        /// The folder that was asked for.
        path: PathBuf,
    },
    /// A file the model needs is not in its folder.
    #[error("model folder {dir} has no {file}")]
    MissingFile {
        /// The model folder.
        dir: PathBuf,
        /// What is missing (a file name, or alternatives).
        file: String,
    },
    /// A file exists but could not be read.
    #[error("could not read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file was read but its content is not what the model needs.
    #[error("malformed {path}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The model's configuration asks for something this crate does not implement.
    #[error("unsupported model configuration in {path}: {reason}")]
    Unsupported {
        /// The file that asks for it.
        path: PathBuf,
        /// What is asked for.
        reason: String,
    },
    /// Invalid options given to the loader.
    #[error("invalid embedder options: {reason}")]
    InvalidOptions {
        /// What is wrong.
        reason: String,
    },
    /// Tokenizing an input failed.
    #[error("tokenizer failed: {reason}")]
    Tokenize {
        /// The tokenizer's message.
        reason: String,
    },
    /// The forward pass failed (a bug or an inconsistent model).
    #[error("inference failed: {source}")]
    Inference {
        /// The tensor library's error.
        #[from]
        source: candle_core::Error,
    },
}
