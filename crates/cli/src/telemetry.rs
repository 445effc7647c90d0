//! OpenTelemetry trace export for `landfall serve`: the `tracing` spans of Landfall's own crates
//! go to an OTLP/HTTP collector as protobuf, in batches.
//!
//! The batch processor exports from a thread of its own, and a full queue drops spans rather
//! than waiting, so a slow or absent collector never holds up a request: failed exports are
//! only logged. Everything OpenTelemetry-specific in the binary lives here.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{Request, Response};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use landfall_config::TelemetryConfig;
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchSpanProcessor, Sampler, SdkTracerProvider};
use tracing::level_filters::LevelFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

/// Longest one export may take, from connecting to reading the reply; retries of a failed
/// export stop once this much time has passed too.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest the first connection attempt to the collector may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest [`TracerGuard::shutdown`] waits for the last spans to reach the collector.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Spans of targets under this prefix are exported: Landfall's crates, not its dependencies
/// (nor the exporter's own diagnostics, which would otherwise feed back into it).
const EXPORTED_TARGETS: &str = "landfall";

/// The layer that exports spans for a subscriber `S`.
pub(crate) type TraceLayer<S> = Box<dyn Layer<S> + Send + Sync + 'static>;

/// Sets W3C trace context (`traceparent`, `tracestate`) as the global propagator and, when
/// `config.otlp_endpoint` is set, builds the layer that exports spans there.
///
/// Exports are sent over `runtime`, which must outlive the returned [`TracerGuard`]'s
/// [`shutdown`](TracerGuard::shutdown).
///
/// # Errors
///
/// When the endpoint is not a usable URI or the TLS setup fails.
pub(crate) fn layer<S>(
    config: &TelemetryConfig,
    runtime: &tokio::runtime::Handle,
) -> anyhow::Result<Option<(TraceLayer<S>, TracerGuard)>>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
{
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let Some(endpoint) = &config.otlp_endpoint else {
        return Ok(None);
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(OnRuntime::new(runtime.clone())?)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(traces_url(endpoint))
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .with_context(|| format!("cannot export traces to {endpoint}"))?;
    let provider = SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(exporter).build())
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.sample_ratio,
        ))))
        .with_resource(
            Resource::builder()
                .with_service_name(config.service_name.clone())
                .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                .build(),
        )
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("landfall"))
        .with_filter(Targets::new().with_target(EXPORTED_TARGETS, LevelFilter::INFO))
        .boxed();
    Ok(Some((layer, TracerGuard { provider })))
}

/// `endpoint` with the OTLP traces path appended.
fn traces_url(endpoint: &str) -> String {
    format!("{}/v1/traces", endpoint.trim_end_matches('/'))
}

/// Keeps the span exporter running; [`shutdown`](Self::shutdown) sends what is still queued.
#[derive(Debug)]
/// Continues W3C trace context (`traceparent`, `tracestate`) from request headers, so a
/// request's spans join the caller's trace.
pub(crate) struct W3cTraceContext;

impl landfall_server::TraceContext for W3cTraceContext {
    fn continue_trace(&self, headers: &http::HeaderMap, span: &tracing::Span) {
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        if !headers.contains_key("traceparent") {
            return;
        }
        let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&opentelemetry_http::HeaderExtractor(headers))
        });
        if let Err(error) = span.set_parent(parent) {
            tracing::debug!(%error, "cannot continue the caller's trace");
        }
    }
}

pub(crate) struct TracerGuard {
    provider: SdkTracerProvider,
}

impl TracerGuard {
    /// Exports the spans still queued and stops the exporter, waiting at most
    /// [`SHUTDOWN_TIMEOUT`]. Spans that could not be sent are reported in the log.
    pub(crate) async fn shutdown(self) {
        // The SDK blocks the calling thread until its export thread is done, and that thread
        // needs the runtime's workers to send: wait on a blocking thread instead.
        let provider = self.provider;
        let result =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT))
                .await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "not every trace span reached the collector"),
            Err(error) => tracing::warn!(%error, "the trace exporter did not shut down"),
        }
    }
}

/// An HTTP client for the exporter that sends on the server's tokio runtime.
///
/// The SDK's batch processor exports from a plain thread of its own, where hyper has no
/// runtime to run on; each request is spawned onto `runtime` and awaited from there.
#[derive(Debug)]
struct OnRuntime {
    client: HyperClient<HttpsConnector<HttpConnector>>,
    runtime: tokio::runtime::Handle,
}

impl OnRuntime {
    fn new(runtime: tokio::runtime::Handle) -> anyhow::Result<Self> {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_platform_verifier(rustls::crypto::ring::default_provider())
            .context("TLS setup for trace export failed")?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            client: HyperClient::new(connector, EXPORT_TIMEOUT, None),
            runtime,
        })
    }
}

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        self.runtime
            .spawn(async move { client.send_bytes(request).await })
            .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_path_is_appended_once() {
        for (endpoint, expected) in [
            ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces"),
            ("http://127.0.0.1:4318/", "http://127.0.0.1:4318/v1/traces"),
            (
                "https://collector.example/otlp",
                "https://collector.example/otlp/v1/traces",
            ),
        ] {
            assert_eq!(traces_url(endpoint), expected, "{endpoint}");
        }
    }
}
