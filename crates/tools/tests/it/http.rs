//! The `http`, `ticket` and `weather` tools against a real HTTP server on 127.0.0.1 that
//! checks credentials the way company APIs do: API keys in a header or the query, Bearer,
//! Basic, and an OAuth2 token endpoint whose tokens can be revoked. Also the SSRF rule, size
//! and time limits, and operations imported from an OpenAPI document.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use landfall_agents::ToolError;

use landfall_config::{Environment, from_toml};
use landfall_tools::{Registry, Services};

use crate::{NoFiles, context, registry, tool};
use serde_json::{Value, json};

#[derive(Default)]
struct Peer {
    token_requests: AtomicUsize,
    /// The token the API accepts now; rotating it makes older tokens answer 401.
    token_generation: AtomicUsize,
}

fn current_token(peer: &Peer) -> String {
    format!("tok-{}", peer.token_generation.load(Ordering::SeqCst))
}

async fn start_peer() -> (String, Arc<Peer>) {
    let peer = Arc::new(Peer::default());
    let app = axum::Router::new()
        .route("/orders/{id}", get(order))
        .route("/orders", post(create_order))
        .route("/search", get(search))
        .route("/basic", get(basic))
        .route("/oauth/token", post(token))
        .route("/oauth/rotate", post(rotate))
        .route("/secure", get(secure))
        .route("/big", get(|| async { "x".repeat(300_000) }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route(
            "/redirect-out",
            get(|| async { Redirect::temporary("http://127.0.0.2:9/secret") }),
        )
        .route("/api/now/table/incident", post(incident))
        .route("/v1/search", get(geocode))
        .route("/v1/forecast", get(forecast))
        .with_state(peer.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}"), peer)
}

async fn order(Path(id): Path<String>, headers: HeaderMap) -> Response {
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some("k-123") {
        return (StatusCode::UNAUTHORIZED, "missing api key").into_response();
    }
    if id == "404" {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no such order"})),
        )
            .into_response();
    }
    Json(json!({"id": id, "status": "shipped", "team": headers.get("x-team").and_then(|v| v.to_str().ok())}))
        .into_response()
}

async fn create_order(headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer b-456") {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    (StatusCode::CREATED, Json(json!({"created": body}))).into_response()
}

async fn search(Query(query): Query<BTreeMap<String, String>>) -> Response {
    if query.get("key").map(String::as_str) != Some("q-789") {
        return StatusCode::FORBIDDEN.into_response();
    }
    Json(json!({"q": query.get("q"), "hits": 2})).into_response()
}

async fn basic(headers: HeaderMap) -> Response {
    // "erp:pa55" in base64.
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Basic ZXJwOnBhNTU=") {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    "basic ok".into_response()
}

async fn token(State(peer): State<Arc<Peer>>, headers: HeaderMap, body: String) -> Response {
    peer.token_requests.fetch_add(1, Ordering::SeqCst);
    // "client-a:s3cret" in base64.
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some("Basic Y2xpZW50LWE6czNjcmV0")
        || !body.contains("grant_type=client_credentials")
        || !body.contains("scope=orders.read")
    {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    Json(json!({"access_token": current_token(&peer), "token_type": "Bearer", "expires_in": 3600}))
        .into_response()
}

async fn rotate(State(peer): State<Arc<Peer>>) -> StatusCode {
    peer.token_generation.fetch_add(1, Ordering::SeqCst);
    StatusCode::NO_CONTENT
}

async fn secure(State(peer): State<Arc<Peer>>, headers: HeaderMap) -> Response {
    let expected = format!("Bearer {}", current_token(&peer));
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    Json(json!({"secret": "granted"})).into_response()
}

async fn incident(headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Basic ZXJwOnBhNTU=") {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    (
        StatusCode::CREATED,
        Json(json!({"result": {"sys_id": "9d385017c611228701d22104cc95c371", "number": "INC0010042", "echo": body}})),
    )
        .into_response()
}

async fn geocode(Query(query): Query<BTreeMap<String, String>>) -> Json<Value> {
    if query.get("name").map(String::as_str) == Some("Hangzhou") {
        Json(
            json!({"results": [{"name": "Hangzhou", "latitude": 30.29365, "longitude": 120.16142, "country": "China", "admin1": "Zhejiang"}]}),
        )
    } else {
        Json(json!({"generationtime_ms": 0.1}))
    }
}

async fn forecast(Query(query): Query<BTreeMap<String, String>>) -> Response {
    if query.get("latitude").map(String::as_str) != Some("30.29365")
        || !query
            .get("current")
            .is_some_and(|c| c.contains("temperature_2m"))
    {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": true, "reason": "bad query"})),
        )
            .into_response();
    }
    Json(json!({
        "current_units": {"temperature_2m": "°C", "wind_speed_10m": "km/h"},
        "current": {"temperature_2m": 18.4, "relative_humidity_2m": 71, "weather_code": 61, "wind_speed_10m": 9.7},
        "daily_units": {"temperature_2m_max": "°C", "precipitation_sum": "mm"},
        "daily": {
            "time": ["2026-12-05", "2026-12-06"],
            "weather_code": [61, 3],
            "temperature_2m_max": [19.0, 16.5],
            "temperature_2m_min": [12.1, 10.0],
            "precipitation_sum": [4.2, 0.0],
            "precipitation_probability_max": [80, 10]
        }
    }))
    .into_response()
}

#[tokio::test]
async fn api_key_bearer_and_basic_credentials_reach_the_api() {
    let (base, _) = start_peer().await;
    let registry = registry(&format!(
        r#"
[tools.orders]
type = "http"
url = "{base}/orders/{{order_id}}"
headers = {{ "X-Team" = "support" }}
allow_private = ["127.0.0.1"]
auth = {{ type = "api_key", name = "X-Api-Key", value = "k-123" }}

[tools.create_order]
type = "http"
method = "POST"
url = "{base}/orders"
parameters = {{ type = "object", properties = {{ sku = {{ type = "string" }}, qty = {{ type = "integer" }} }}, required = ["sku"] }}
allow_private = ["127.0.0.1"]
auth = {{ type = "bearer", token = "b-456" }}

[tools.search]
type = "http"
url = "{base}/search"
parameters = {{ type = "object", properties = {{ q = {{ type = "string" }} }} }}
allow_private = ["127.0.0.0/8"]
auth = {{ type = "api_key", name = "key", value = "q-789", in = "query" }}

[tools.basic]
type = "http"
url = "{base}/basic"
allow_private = ["127.0.0.1"]
auth = {{ type = "basic", username = "erp", password = "pa55" }}
"#
    ));
    let orders = tool(&registry, "orders", "orders");
    assert_eq!(orders.spec().parameters["required"], json!(["order_id"]));
    let output = orders
        .call(json!({"order_id": "A 42/7"}), &context(5))
        .await
        .unwrap();
    let data = output.data.unwrap();
    assert_eq!(
        data["body"]["id"], "A 42/7",
        "path argument encoded and decoded"
    );
    assert_eq!(data["body"]["team"], "support", "configured header sent");

    let missing = orders
        .call(json!({"order_id": "404"}), &context(5))
        .await
        .unwrap_err();
    assert!(
        matches!(&missing, ToolError::Failed { message } if message.contains("404") && message.contains("no such order")),
        "{missing:?}"
    );

    let created = tool(&registry, "create_order", "create_order");
    assert!(created.spec().sensitive, "a POST changes something");
    let output = created
        .call(json!({"sku": "P-1", "qty": 2}), &context(5))
        .await
        .unwrap();
    assert_eq!(
        output.data.unwrap()["body"]["created"],
        json!({"sku": "P-1", "qty": 2})
    );

    let search = tool(&registry, "search", "search");
    let output = search
        .call(json!({"q": "seal kit"}), &context(5))
        .await
        .unwrap();
    assert_eq!(
        output.data.unwrap()["body"],
        json!({"q": "seal kit", "hits": 2})
    );

    let basic = tool(&registry, "basic", "basic");
    assert_eq!(
        basic.call(json!({}), &context(5)).await.unwrap().text,
        "basic ok"
    );
}

#[tokio::test]
async fn oauth2_tokens_are_cached_and_fetched_again_after_a_401() {
    let (base, peer) = start_peer().await;
    let registry = registry(&format!(
        r#"
[tools.secure]
type = "http"
url = "{base}/secure"
allow_private = ["127.0.0.1"]
auth = {{ type = "oauth2_client_credentials", token_url = "{base}/oauth/token", client_id = "client-a", client_secret = "s3cret", scope = "orders.read" }}

[tools.wrong_secret]
type = "http"
url = "{base}/secure"
allow_private = ["127.0.0.1"]
auth = {{ type = "oauth2_client_credentials", token_url = "{base}/oauth/token", client_id = "client-a", client_secret = "nope", scope = "orders.read" }}
"#
    ));
    let secure = tool(&registry, "secure", "secure");
    for _ in 0..3 {
        let output = secure.call(json!({}), &context(5)).await.unwrap();
        assert_eq!(output.data.unwrap()["body"]["secret"], "granted");
    }
    assert_eq!(
        peer.token_requests.load(Ordering::SeqCst),
        1,
        "one token for three calls"
    );

    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
        .post(format!("{base}/oauth/rotate"))
        .send()
        .await
        .unwrap();
    let output = secure.call(json!({}), &context(5)).await.unwrap();
    assert_eq!(output.data.unwrap()["body"]["secret"], "granted");
    assert_eq!(
        peer.token_requests.load(Ordering::SeqCst),
        2,
        "a 401 fetched a new token"
    );

    let wrong = tool(&registry, "wrong_secret", "wrong_secret");
    let error = wrong.call(json!({}), &context(5)).await.unwrap_err();
    assert!(
        matches!(&error, ToolError::Failed { message } if message.contains("token endpoint answered 401")),
        "{error:?}"
    );
}

#[tokio::test]
async fn private_destinations_are_refused_unless_allowlisted() {
    let (base, _) = start_peer().await;
    let port = base.rsplit(':').next().unwrap();
    let registry = registry(&format!(
        r#"
[tools.literal]
type = "http"
url = "{base}/basic"

[tools.by_name]
type = "http"
url = "http://localhost:{port}/basic"

[tools.metadata]
type = "http"
url = "http://169.254.169.254/latest/meta-data/"

[tools.redirect]
type = "http"
url = "{base}/redirect-out"
allow_private = ["127.0.0.1"]
"#
    ));
    for (entry, needle) in [
        ("literal", "127.0.0.1"),
        ("by_name", "localhost"),
        ("metadata", "169.254.169.254"),
        ("redirect", "127.0.0.2"),
    ] {
        let error = tool(&registry, entry, entry)
            .call(json!({}), &context(5))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ToolError::Refused { message } if message.contains(needle) && message.contains("allow_private")),
            "{entry}: {error:?}"
        );
    }
}

#[tokio::test]
async fn responses_are_bounded_in_size_and_time() {
    let (base, _) = start_peer().await;
    let registry = registry(&format!(
        r#"
[agents]
tool_timeout_ms = 30000

[tools.big]
type = "http"
url = "{base}/big"
max_response_bytes = 100000
allow_private = ["127.0.0.1"]

[tools.slow]
type = "http"
url = "{base}/slow"
timeout_ms = 300
allow_private = ["127.0.0.1"]
"#
    ));
    let error = tool(&registry, "big", "big")
        .call(json!({}), &context(5))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ToolError::Failed { message } if message.contains("100000 bytes")),
        "{error:?}"
    );

    let started = Instant::now();
    let error = tool(&registry, "slow", "slow")
        .call(json!({}), &context(30))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ToolError::Timeout { timeout_ms: 300 }),
        "{error:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // The run's deadline is shorter than the tool's timeout: it wins.
    let started = Instant::now();
    let mut short = context(30);
    short.deadline = Instant::now() + Duration::from_millis(200);
    let slow = tool(&registry, "slow", "slow");
    assert!(slow.call(json!({}), &short).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn openapi_operations_become_tools() {
    let (base, _) = start_peer().await;
    let folder = tempfile::tempdir().unwrap();
    let document = folder.path().join("erp.yaml");
    std::fs::write(
        &document,
        format!(
            r##"
openapi: 3.0.3
info: {{ title: ERP, version: "1" }}
servers: [{{ url: "{base}" }}]
paths:
  /orders/{{id}}:
    parameters:
      - $ref: "#/components/parameters/OrderId"
    get:
      operationId: getOrder
      summary: Looks up one order.
  /orders:
    post:
      operationId: createOrder
      summary: Creates an order.
      requestBody:
        required: true
        content:
          application/json:
            schema: {{ $ref: "#/components/schemas/NewOrder" }}
  /search:
    get:
      operationId: searchOrders
      parameters:
        - {{ name: q, in: query, required: true, schema: {{ type: string }} }}
components:
  parameters:
    OrderId: {{ name: id, in: path, required: true, schema: {{ type: string }}, description: The order number. }}
  schemas:
    NewOrder:
      type: object
      properties: {{ sku: {{ type: string }}, qty: {{ type: integer, minimum: 1 }} }}
      required: [sku]
"##
        ),
    )
    .unwrap();
    let registry = registry(&format!(
        r#"
[tools.erp]
type = "http"
openapi = {document:?}
operations = ["getOrder", "createOrder"]
allow_private = ["127.0.0.1"]
headers = {{ "X-Api-Key" = "k-123", "Authorization" = "Bearer b-456" }}
"#
    ));
    let entry = registry.get("erp").unwrap();
    let names: Vec<&str> = entry
        .tools
        .iter()
        .map(|tool| tool.spec().name.as_str())
        .collect();
    assert_eq!(names, ["erp_createOrder", "erp_getOrder"]);

    let get_order = tool(&registry, "erp", "erp_getOrder");
    assert_eq!(get_order.spec().description, "Looks up one order.");
    assert_eq!(
        get_order.spec().parameters["properties"]["id"]["description"],
        "The order number."
    );
    let output = get_order
        .call(json!({"id": "7"}), &context(5))
        .await
        .unwrap();
    assert_eq!(output.data.unwrap()["body"]["id"], "7");

    let create = tool(&registry, "erp", "erp_createOrder");
    assert_eq!(
        create.spec().parameters["properties"]["body"]["required"],
        json!(["sku"]),
        "the $ref was inlined"
    );
    let output = create
        .call(json!({"body": {"sku": "S", "qty": 1}}), &context(5))
        .await
        .unwrap();
    assert_eq!(
        output.data.unwrap()["body"]["created"],
        json!({"sku": "S", "qty": 1})
    );

    // An operation the document lacks is a start-up error naming it.
    let config = from_toml(
        &format!("[tools.erp]\ntype = \"http\"\nopenapi = {document:?}\noperations = [\"nope\"]\n"),
        &Environment::default(),
    )
    .unwrap();
    let services = Services {
        attachments: Arc::new(NoFiles),
    };
    let errors = Registry::build(&config.tools, &config.agents, &services).unwrap_err();
    assert!(
        errors[0].to_string().contains("no operation `nope`"),
        "{errors:?}"
    );
}

#[tokio::test]
async fn tickets_are_opened_from_a_body_template() {
    let (base, _) = start_peer().await;
    let registry = registry(&format!(
        r#"
[tools.open_ticket]
type = "ticket"
url = "{base}/api/now/table/incident"
id_pointer = "/result/sys_id"
number_pointer = "/result/number"
link = "https://acme.service-now.com/nav_to.do?uri=incident.do?sys_id={{id}}"
allow_private = ["127.0.0.1"]
auth = {{ type = "basic", username = "erp", password = "pa55" }}
body = {{ short_description = "{{{{ short_description }}}}", description = "{{{{ description }}}}", urgency = "{{{{ urgency or '3' }}}}", caller_id = "landfall", category = "inquiry" }}
"#
    ));
    let entry = registry.get("open_ticket").unwrap();
    assert!(
        entry.require_approval,
        "tickets wait for approval unless configured otherwise"
    );
    let ticket = tool(&registry, "open_ticket", "open_ticket");
    let output = ticket
        .call(
            json!({"short_description": "Pump leaks", "description": "Seal worn after 2100 h"}),
            &context(5),
        )
        .await
        .unwrap();
    let data = output.data.unwrap();
    assert_eq!(data["id"], "9d385017c611228701d22104cc95c371");
    assert_eq!(data["number"], "INC0010042");
    assert_eq!(
        data["link"],
        "https://acme.service-now.com/nav_to.do?uri=incident.do?sys_id=9d385017c611228701d22104cc95c371"
    );
    assert!(output.text.contains("INC0010042"), "{}", output.text);
}

#[tokio::test]
async fn weather_comes_from_the_forecast_api_for_a_place_name() {
    let (base, _) = start_peer().await;
    let registry = registry(&format!(
        r#"
[tools.weather]
type = "weather"
base_url = "{base}"
geocoding_url = "{base}"
allow_private = ["127.0.0.1"]
"#
    ));
    let weather = tool(&registry, "weather", "weather");
    let output = weather
        .call(json!({"location": "Hangzhou", "days": 2}), &context(5))
        .await
        .unwrap();
    assert!(
        output
            .text
            .starts_with("Weather for Hangzhou, Zhejiang, China"),
        "{}",
        output.text
    );
    assert!(
        output.text.contains("Now: 18.4°C light rain, humidity 71%"),
        "{}",
        output.text
    );
    assert!(
        output.text.contains("2026-12-06: overcast, 10 to 16.5°C"),
        "{}",
        output.text
    );

    let error = weather
        .call(json!({"location": "Atlantis"}), &context(5))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ToolError::Failed { message } if message.contains("Atlantis")),
        "{error:?}"
    );
    let error = weather.call(json!({}), &context(5)).await.unwrap_err();
    assert!(
        matches!(error, ToolError::InvalidArguments { .. }),
        "{error:?}"
    );
}
