//! Where tests find the real models that `scripts/fetch-test-models.sh` caches (feature
//! `test-support`; for tests of this and other crates only).

use std::path::PathBuf;

/// Environment variable naming the folder of test models.
pub const MODELS_DIR_VAR: &str = "LANDFALL_TEST_MODELS";
/// Environment variable that turns a missing test model from a skip into a failure (CI sets
/// it to `1`).
pub const REQUIRE_VAR: &str = "LANDFALL_REQUIRE_TEST_MODELS";

/// A test model is missing although [`REQUIRE_VAR`] asks for it.
#[derive(Debug, thiserror::Error)]
#[error(
    "test model {model} is missing from {dir} and {REQUIRE_VAR}=1; \
     run scripts/fetch-test-models.sh"
)]
pub struct MissingTestModel {
    /// The model's folder name.
    pub model: String,
    /// Where it was looked for.
    pub dir: PathBuf,
}

/// `$LANDFALL_TEST_MODELS`, else `~/.cache/landfall-test`.
pub fn models_root() -> PathBuf {
    if let Some(dir) = std::env::var_os(MODELS_DIR_VAR).filter(|value| !value.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".cache").join("landfall-test")
}

/// The file name of the GGUF chat model the tests use.
pub const SMOLLM2_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The folder of test model `name` (its `config.json` present). When it is missing: `Ok(None)`
/// after printing why (the caller returns early, skipping), or `Err` when
/// `LANDFALL_REQUIRE_TEST_MODELS=1`.
///
/// # Errors
/// [`MissingTestModel`] when the model is missing and required.
#[expect(clippy::print_stderr, reason = "a skipped test says why")]
pub fn model_dir(name: &str) -> Result<Option<PathBuf>, MissingTestModel> {
    let dir = models_root().join(name);
    let present = if name.ends_with(".gguf") {
        dir.is_file()
    } else {
        dir.join("config.json").is_file()
    };
    if present {
        return Ok(Some(dir));
    }
    if std::env::var(REQUIRE_VAR).is_ok_and(|value| value == "1") {
        return Err(MissingTestModel {
            model: name.to_owned(),
            dir,
        });
    }
    eprintln!(
        "skipped: test model {name} not found in {} (run scripts/fetch-test-models.sh)",
        dir.display()
    );
    Ok(None)
}

/// [`model_dir`] for all-MiniLM-L6-v2.
///
/// # Errors
/// [`MissingTestModel`] when the model is missing and required.
pub fn minilm_dir() -> Result<Option<PathBuf>, MissingTestModel> {
    model_dir("all-MiniLM-L6-v2")
}

/// The SmolLM2-135M-Instruct Q4_1 GGUF file, as [`model_dir`] finds models.
///
/// # Errors
/// [`MissingTestModel`] when the model is missing and required.
pub fn smollm2_file() -> Result<Option<PathBuf>, MissingTestModel> {
    model_dir(SMOLLM2_FILE)
}
