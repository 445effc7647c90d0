//! Credentials on outbound requests of `http` and `ticket` tools: API key (header or query),
//! Bearer, Basic, and OAuth2 client credentials with a cached token.

use std::time::{Duration, Instant};

use base64::Engine as _;
use landfall_config::{ApiKeyLocation, HttpAuth};
use serde::Deserialize;
use tokio::sync::Mutex;

/// A token is fetched again this long before it expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);
/// Lifetime assumed when the token response gives none.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(300);

pub(crate) struct Auth {
    config: HttpAuth,
    token: Mutex<Option<Token>>,
}

#[derive(Clone)]
struct Token {
    access_token: String,
    expires_at: Instant,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl Auth {
    pub(crate) fn new(config: HttpAuth) -> Self {
        Self {
            config,
            token: Mutex::new(None),
        }
    }

    /// Whether a 401 is worth one retry with a fresh credential.
    pub(crate) fn refreshable(&self) -> bool {
        matches!(self.config, HttpAuth::Oauth2ClientCredentials { .. })
    }

    /// Drops the cached token, so the next request fetches another.
    pub(crate) async fn invalidate(&self) {
        *self.token.lock().await = None;
    }

    /// Adds the credential to `request`.
    ///
    /// # Errors
    /// When an OAuth2 token cannot be had; the message says why.
    pub(crate) async fn apply(
        &self,
        client: &reqwest::Client,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, String> {
        Ok(match &self.config {
            HttpAuth::ApiKey {
                name,
                value,
                location: ApiKeyLocation::Header,
            } => request.header(name.as_str(), value.expose()),
            HttpAuth::ApiKey {
                name,
                value,
                location: ApiKeyLocation::Query,
            } => request.query(&[(name.as_str(), value.expose())]),
            HttpAuth::Bearer { token } => request.bearer_auth(token.expose()),
            HttpAuth::Basic { username, password } => {
                let pair = format!("{username}:{}", password.expose());
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                request.header(http::header::AUTHORIZATION, format!("Basic {encoded}"))
            }
            HttpAuth::Oauth2ClientCredentials { .. } => {
                request.bearer_auth(self.access_token(client).await?)
            }
        })
    }

    /// The cached token, or a new one from the token endpoint. The lock is held while
    /// fetching so that concurrent calls share one token request.
    async fn access_token(&self, client: &reqwest::Client) -> Result<String, String> {
        let HttpAuth::Oauth2ClientCredentials {
            token_url,
            client_id,
            client_secret,
            scope,
            audience,
        } = &self.config
        else {
            return Err("not an OAuth2 credential".to_owned());
        };
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref()
            && Instant::now() + EXPIRY_MARGIN < token.expires_at
        {
            return Ok(token.access_token.clone());
        }
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        if let Some(audience) = audience {
            form.push(("audience", audience));
        }
        let response = client
            .post(token_url)
            .basic_auth(client_id, Some(client_secret.expose()))
            .form(&form)
            .send()
            .await
            .map_err(|error| {
                format!(
                    "the OAuth2 token request failed: {}",
                    crate::net::describe(&error)
                )
            })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|error| {
            format!(
                "the OAuth2 token response broke off: {}",
                crate::net::describe(&error)
            )
        })?;
        if !status.is_success() {
            return Err(format!(
                "the OAuth2 token endpoint answered {status}: {}",
                crate::http::excerpt(&body)
            ));
        }
        let token: TokenResponse = serde_json::from_slice(&body)
            .map_err(|error| format!("the OAuth2 token response is not usable: {error}"))?;
        if let Some(kind) = &token.token_type
            && !kind.eq_ignore_ascii_case("bearer")
        {
            return Err(format!("the OAuth2 token is of type `{kind}`, not Bearer"));
        }
        let lifetime = token
            .expires_in
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
        *cached = Some(Token {
            access_token: token.access_token.clone(),
            expires_at: Instant::now() + lifetime,
        });
        Ok(token.access_token)
    }
}
