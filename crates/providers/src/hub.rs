//! Fetching model files from the Hugging Face Hub, or a mirror of it (`HF_ENDPOINT`), into
//! the Hub's own cache layout (`models--org--name/{blobs,snapshots,refs}`), so a cache filled
//! by Python's `huggingface_hub` is reused and the other way round.
//!
//! A file is asked for with `HEAD …/resolve/REV/FILE`, which names the commit and the blob's
//! ETag (for large files the redirect says where their bytes are). A blob already in the cache
//! is only linked into the snapshot; otherwise it is downloaded to `blobs/ETAG.incomplete`, and
//! an interrupted download resumes from there with a `Range` request. Large files' ETags are
//! their SHA-256, which is checked before the blob is kept.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use landfall_config::{HttpSettings, Secret};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

use crate::http::{HttpClient, Response, error_chain};

/// The public Hub, when neither the configuration nor `HF_ENDPOINT` names another.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Redirects followed for one file (the Hub sends one, a CDN rarely another).
const MAX_REDIRECTS: usize = 5;
/// Longest wait for a response's headers, and between two pieces of a body.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a file could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("invalid Hub endpoint `{endpoint}`: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("`{repo_id}` is not on the Hub at revision `{revision}` ({code})")]
    RepoNotFound {
        repo_id: String,
        revision: String,
        code: String,
    },
    #[error(
        "the Hub refused `{repo_id}` (HTTP {status}): it is private or gated; set HF_TOKEN to a token with access"
    )]
    Denied { repo_id: String, status: u16 },
    #[error("the Hub answered HTTP {status} for `{file}`")]
    Status { file: String, status: u16 },
    #[error("cannot reach the Hub for `{file}`: {message}")]
    Connection { file: String, message: String },
    #[error("the Hub's answer for `{file}` lacks {what}")]
    Incomplete { file: String, what: &'static str },
    #[error("`{file}` arrived corrupt: {reason}")]
    Corrupt { file: String, reason: String },
    #[error("cannot write the model cache at {}: {error}", path.display())]
    Cache {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// How far the download of one file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProgress {
    pub file: String,
    pub bytes_done: u64,
    /// `None` when the Hub did not say.
    pub bytes_total: Option<u64>,
}

/// Receives [`FileProgress`] as bytes arrive (to drive a progress bar or log lines).
pub type ProgressFn = Arc<dyn Fn(&FileProgress) + Send + Sync>;

/// One repository at one revision, cached under `cache_dir`.
#[derive(Debug, Clone, Copy)]
pub struct HubRepo<'a> {
    /// `org/name`.
    pub repo_id: &'a str,
    /// A branch, tag or commit; `main` by default.
    pub revision: &'a str,
    pub cache_dir: &'a Path,
}

impl HubRepo<'_> {
    /// `cache_dir/models--org--name`.
    #[must_use]
    pub fn folder(&self) -> PathBuf {
        self.cache_dir
            .join(format!("models--{}", self.repo_id.replace('/', "--")))
    }
}

/// What `HEAD …/resolve/…` said about a file.
struct FileMeta {
    commit: String,
    etag: String,
    size: Option<u64>,
    /// Where the bytes are, when not at the resolve URL itself.
    location: Uri,
}

/// A client of one Hub endpoint.
pub struct HubClient {
    http: HttpClient,
    endpoint: String,
    authorization: Option<HeaderValue>,
}

impl std::fmt::Debug for HubClient {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("HubClient")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl HubClient {
    /// A client of `endpoint` (`https://huggingface.co` or a mirror), sending `token` as a
    /// bearer token to the endpoint itself (never to the hosts it redirects to), connecting
    /// through `proxy_url` when given.
    ///
    /// # Errors
    /// [`HubError::Endpoint`] when the endpoint or proxy is not a usable URL.
    pub fn new(
        endpoint: &str,
        token: Option<&str>,
        proxy_url: Option<&str>,
    ) -> Result<Self, HubError> {
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        let invalid = |reason: String| HubError::Endpoint {
            endpoint: endpoint.clone(),
            reason,
        };
        let uri: Uri = endpoint
            .parse()
            .map_err(|error: http::uri::InvalidUri| invalid(error.to_string()))?;
        if uri.host().is_none() || !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(invalid("an http:// or https:// URL is needed".to_owned()));
        }
        let settings = HttpSettings {
            base_url: endpoint.clone(),
            proxy_url: proxy_url.map(Secret::new),
            ..HttpSettings::default()
        };
        let http = HttpClient::new(&settings, HeaderMap::new())
            .map_err(|error| invalid(error.to_string()))?;
        let authorization = token
            .filter(|token| !token.is_empty())
            .map(|token| {
                HeaderValue::from_str(&format!("Bearer {token}")).map(|mut value| {
                    value.set_sensitive(true);
                    value
                })
            })
            .transpose()
            .map_err(|_| invalid("HF_TOKEN is not a valid header value".to_owned()))?;
        Ok(Self {
            http,
            endpoint,
            authorization,
        })
    }

    /// A client configured as Python's `huggingface_hub` is: `endpoint`, else `HF_ENDPOINT`,
    /// else the public Hub; `HF_TOKEN`; `HTTPS_PROXY` (or `https_proxy`).
    ///
    /// # Errors
    /// As [`HubClient::new`].
    pub fn from_env(endpoint: Option<&str>) -> Result<Self, HubError> {
        let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let endpoint = endpoint
            .map(str::to_owned)
            .or_else(|| var("HF_ENDPOINT"))
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        let proxy = var("HTTPS_PROXY").or_else(|| var("https_proxy"));
        Self::new(&endpoint, var("HF_TOKEN").as_deref(), proxy.as_deref())
    }

    #[must_use]
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Makes `file` part of `repo`'s cached snapshot, downloading it unless its blob is
    /// cached already. Returns the snapshot folder, or `None` when the repository has no such
    /// file.
    ///
    /// # Errors
    /// A missing or refused repository, a network failure, a corrupt download, or a cache
    /// that cannot be written.
    pub async fn fetch_file(
        &self,
        repo: &HubRepo<'_>,
        file: &str,
        progress: Option<&ProgressFn>,
    ) -> Result<Option<PathBuf>, HubError> {
        let Some(meta) = self.head(repo, file).await? else {
            return Ok(None);
        };
        let folder = repo.folder();
        let blob = folder.join("blobs").join(&meta.etag);
        if !blob.is_file() {
            self.download(&meta, file, &blob, progress).await?;
        }
        let snapshot = folder.join("snapshots").join(&meta.commit);
        link(&blob, &snapshot.join(file)).map_err(|error| HubError::Cache {
            path: snapshot.join(file),
            error,
        })?;
        if repo.revision != meta.commit {
            let reference = folder.join("refs").join(repo.revision);
            write_file(&reference, meta.commit.as_bytes()).map_err(|error| HubError::Cache {
                path: reference,
                error,
            })?;
        }
        Ok(Some(snapshot))
    }

    fn resolve_uri(&self, repo: &HubRepo<'_>, file: &str) -> Result<Uri, HubError> {
        let encode = |text: &str| {
            percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
        };
        let path: Vec<String> = file.split('/').map(encode).collect();
        format!(
            "{}/{}/resolve/{}/{}",
            self.endpoint,
            repo.repo_id,
            encode(repo.revision),
            path.join("/")
        )
        .parse()
        .map_err(|error: http::uri::InvalidUri| HubError::Endpoint {
            endpoint: self.endpoint.clone(),
            reason: error.to_string(),
        })
    }

    /// The file's commit, ETag, size and download location; `None` when there is no such file.
    async fn head(&self, repo: &HubRepo<'_>, file: &str) -> Result<Option<FileMeta>, HubError> {
        let mut uri = self.resolve_uri(repo, file)?;
        for _ in 0..=MAX_REDIRECTS {
            let response = self.send(Method::HEAD, &uri, None, file).await?;
            let status = response.status();
            let headers = response.headers();
            let text = |name: &str| {
                headers
                    .get(name)
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned)
            };
            if status == StatusCode::NOT_FOUND
                || status == StatusCode::UNAUTHORIZED
                || status == StatusCode::FORBIDDEN
            {
                return match text("x-error-code").as_deref() {
                    Some("EntryNotFound") => Ok(None),
                    Some(code @ ("RepoNotFound" | "RevisionNotFound")) => {
                        Err(HubError::RepoNotFound {
                            repo_id: repo.repo_id.to_owned(),
                            revision: repo.revision.to_owned(),
                            code: code.to_owned(),
                        })
                    }
                    _ if status == StatusCode::NOT_FOUND => Ok(None),
                    _ => Err(HubError::Denied {
                        repo_id: repo.repo_id.to_owned(),
                        status: status.as_u16(),
                    }),
                };
            }
            let location = text("location")
                .map(|location| absolute(&uri, &location))
                .transpose()
                .map_err(|reason| HubError::Corrupt {
                    file: file.to_owned(),
                    reason,
                })?;
            let commit = text("x-repo-commit");
            if status.is_redirection() && commit.is_none() {
                // A renamed repository: ask again where it lives now.
                uri = location.ok_or_else(|| incomplete(file, "a Location"))?;
                continue;
            }
            if !status.is_success() && !status.is_redirection() {
                return Err(HubError::Status {
                    file: file.to_owned(),
                    status: status.as_u16(),
                });
            }
            let etag = text("x-linked-etag")
                .or_else(|| text("etag"))
                .map(|etag| etag.trim_start_matches("W/").trim_matches('"').to_owned())
                .filter(|etag| is_plain(etag))
                .ok_or_else(|| incomplete(file, "an ETag"))?;
            let commit = commit
                .filter(|commit| is_plain(commit))
                .ok_or_else(|| incomplete(file, "an X-Repo-Commit"))?;
            let size = text("x-linked-size")
                .or_else(|| text("content-length"))
                .and_then(|size| size.parse().ok());
            let location = match (status.is_redirection(), location) {
                (true, Some(location)) => location,
                (true, None) => return Err(incomplete(file, "a Location")),
                (false, _) => uri,
            };
            return Ok(Some(FileMeta {
                commit,
                etag,
                size,
                location,
            }));
        }
        Err(HubError::Status {
            file: file.to_owned(),
            status: 310,
        })
    }

    /// Downloads the file's bytes into `blob`, resuming a partial download.
    async fn download(
        &self,
        meta: &FileMeta,
        file: &str,
        blob: &Path,
        progress: Option<&ProgressFn>,
    ) -> Result<(), HubError> {
        let cache_error = |path: &Path| {
            let path = path.to_path_buf();
            move |error| HubError::Cache { path, error }
        };
        let partial = blob.with_extension("incomplete");
        if let Some(parent) = blob.parent() {
            std::fs::create_dir_all(parent).map_err(cache_error(parent))?;
        }
        let mut offset = std::fs::metadata(&partial).map_or(0, |meta| meta.len());
        let mut uri = meta.location.clone();
        let mut response = None;
        for _ in 0..=MAX_REDIRECTS {
            let range = (offset > 0).then(|| format!("bytes={offset}-"));
            let answer = self.send(Method::GET, &uri, range.as_deref(), file).await?;
            let status = answer.status();
            if status.is_redirection() {
                let location = answer
                    .headers()
                    .get("location")
                    .and_then(|value| value.to_str().ok())
                    .ok_or_else(|| incomplete(file, "a Location"))?;
                uri = absolute(&uri, location).map_err(|reason| HubError::Corrupt {
                    file: file.to_owned(),
                    reason,
                })?;
                continue;
            }
            if status == StatusCode::RANGE_NOT_SATISFIABLE {
                // The partial file is as long as the blob, or longer: start over.
                std::fs::remove_file(&partial).map_err(cache_error(&partial))?;
                offset = 0;
                continue;
            }
            if !status.is_success() {
                return Err(HubError::Status {
                    file: file.to_owned(),
                    status: status.as_u16(),
                });
            }
            if status != StatusCode::PARTIAL_CONTENT {
                offset = 0; // the server sent the whole file
            }
            response = Some(answer);
            break;
        }
        let response = response.ok_or(HubError::Status {
            file: file.to_owned(),
            status: 310,
        })?;

        let mut hasher = Sha256::new();
        let mut output = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(offset > 0)
            .truncate(offset == 0)
            .open(&partial)
            .await
            .map_err(cache_error(&partial))?;
        if offset > 0 {
            // What an earlier run received counts too; hashed in pieces, not read whole.
            std::fs::File::open(&partial)
                .and_then(|mut done| std::io::copy(&mut done, &mut hasher))
                .map_err(cache_error(&partial))?;
        }
        let mut done = offset;
        let mut report = FileProgress {
            file: file.to_owned(),
            bytes_done: done,
            bytes_total: meta.size,
        };
        let mut body = response.into_body();
        loop {
            let frame = timeout(RESPONSE_TIMEOUT, body.frame()).await.map_err(|_| {
                HubError::Connection {
                    file: file.to_owned(),
                    message: format!("no data for {} s", RESPONSE_TIMEOUT.as_secs()),
                }
            })?;
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|error| HubError::Connection {
                file: file.to_owned(),
                message: error_chain(&error),
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            output
                .write_all(&data)
                .await
                .map_err(cache_error(&partial))?;
            hasher.update(&data);
            done += data.len() as u64;
            if let Some(progress) = progress {
                report.bytes_done = done;
                progress(&report);
            }
        }
        output.sync_all().await.map_err(cache_error(&partial))?;
        drop(output);
        if let Some(size) = meta.size
            && size != done
        {
            return Err(HubError::Corrupt {
                file: file.to_owned(),
                reason: format!("{done} bytes of {size}; fetch again to resume"),
            });
        }
        // Large files' ETags are the SHA-256 of their content.
        let digest = format!("{:x}", hasher.finalize());
        if meta.etag.len() == 64
            && meta.etag.bytes().all(|byte| byte.is_ascii_hexdigit())
            && !digest.eq_ignore_ascii_case(&meta.etag)
        {
            let _ = std::fs::remove_file(&partial);
            return Err(HubError::Corrupt {
                file: file.to_owned(),
                reason: format!("SHA-256 {digest}, the Hub says {}", meta.etag),
            });
        }
        std::fs::rename(&partial, blob).map_err(cache_error(blob))
    }

    /// One request without following redirects, with the token when it goes to the endpoint.
    async fn send(
        &self,
        method: Method,
        uri: &Uri,
        range: Option<&str>,
        file: &str,
    ) -> Result<Response, HubError> {
        let mut request = Request::new(Full::new(Bytes::new()));
        *request.method_mut() = method;
        *request.uri_mut() = uri.clone();
        let headers = request.headers_mut();
        headers.insert(
            http::header::USER_AGENT,
            HeaderValue::from_static(concat!("landfall/", env!("CARGO_PKG_VERSION"))),
        );
        headers.insert(
            http::header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        if let Some(range) = range.and_then(|range| HeaderValue::from_str(range).ok()) {
            headers.insert(http::header::RANGE, range);
        }
        if let Some(authorization) = &self.authorization
            && uri.to_string().starts_with(&format!("{}/", self.endpoint))
        {
            headers.insert(http::header::AUTHORIZATION, authorization.clone());
        }
        timeout(RESPONSE_TIMEOUT, self.http.send(request))
            .await
            .map_err(|_| HubError::Connection {
                file: file.to_owned(),
                message: format!("no answer in {} s", RESPONSE_TIMEOUT.as_secs()),
            })?
            .map_err(|message| HubError::Connection {
                file: file.to_owned(),
                message,
            })
    }
}

fn incomplete(file: &str, what: &'static str) -> HubError {
    HubError::Incomplete {
        file: file.to_owned(),
        what,
    }
}

/// Whether a header value is safe as a file name (ETags and commits are hex or base64-ish).
fn is_plain(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-_.".contains(&byte))
        && text != "."
        && text != ".."
}

/// `location` (absolute, or relative to `base`) as a URI.
fn absolute(base: &Uri, location: &str) -> Result<Uri, String> {
    let base = url::Url::parse(&base.to_string()).map_err(|error| error.to_string())?;
    base.join(location)
        .map_err(|error| format!("bad redirect `{location}`: {error}"))?
        .as_str()
        .parse()
        .map_err(|error: http::uri::InvalidUri| error.to_string())
}

/// `link` → `blob` as a relative symbolic link (as `huggingface_hub` makes them), or a copy
/// where links cannot be made.
fn link(blob: &Path, link: &Path) -> std::io::Result<()> {
    let Some(parent) = link.parent() else {
        return Err(std::io::Error::other("a snapshot file needs a folder"));
    };
    std::fs::create_dir_all(parent)?;
    if link.exists() {
        return Ok(());
    }
    // From `snapshots/COMMIT/a/b` up to the repository folder, then into `blobs/`.
    let depth = link
        .strip_prefix(
            blob.parent()
                .and_then(Path::parent)
                .unwrap_or(Path::new("")),
        )
        .map_or(0, |relative| {
            relative.components().count().saturating_sub(1)
        });
    let mut target = PathBuf::new();
    for _ in 0..depth {
        target.push("..");
    }
    target.push("blobs");
    target.push(blob.file_name().unwrap_or_default());
    let _ = std::fs::remove_file(link); // a dangling link from an earlier run
    #[cfg(unix)]
    if std::os::unix::fs::symlink(&target, link).is_ok() {
        return Ok(());
    }
    std::fs::copy(blob, link).map(|_| ())
}

/// Writes `bytes` to `path`, creating its folder.
fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_and_absolute_redirects_resolve() {
        let base: Uri = "https://hub.example/org/m/resolve/main/a.bin"
            .parse()
            .unwrap();
        assert_eq!(
            absolute(&base, "/api/resolve-cache/x").unwrap().to_string(),
            "https://hub.example/api/resolve-cache/x"
        );
        assert_eq!(
            absolute(&base, "https://cdn.example/b?sig=1")
                .unwrap()
                .to_string(),
            "https://cdn.example/b?sig=1"
        );
    }

    #[test]
    fn header_values_that_are_not_plain_names_are_refused() {
        assert!(is_plain("a1b2-c3_d4.e"));
        for bad in ["", ".", "..", "../x", "a/b", "a b"] {
            assert!(!is_plain(bad), "{bad}");
        }
    }

    #[test]
    fn bad_endpoints_are_refused() {
        for endpoint in ["", "huggingface.co", "ftp://mirror.example"] {
            assert!(
                matches!(
                    HubClient::new(endpoint, None, None),
                    Err(HubError::Endpoint { .. })
                ),
                "{endpoint}"
            );
        }
        assert!(HubClient::new("https://hf-mirror.com/", None, None).is_ok());
    }
}
