//! `type = "weather"`: current conditions and a daily forecast from Open-Meteo's forecast API,
//! for a place name (resolved with its geocoding API) or coordinates.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use landfall_agents::{Tool, ToolContext, ToolError, ToolOutput, ToolSpec};
use landfall_config::{ToolConfig, WeatherProvider, WeatherToolConfig};
use serde_json::{Value, json};

use crate::BuildError;
use crate::http::{Connection, excerpt};

const OPEN_METEO: &str = "https://api.open-meteo.com";
const OPEN_METEO_GEOCODING: &str = "https://geocoding-api.open-meteo.com";
const MAX_RESPONSE_BYTES: usize = 512 * 1024;
const CURRENT: &str = "temperature_2m,relative_humidity_2m,apparent_temperature,precipitation,weather_code,wind_speed_10m";
const DAILY: &str = "weather_code,temperature_2m_max,temperature_2m_min,precipitation_sum,precipitation_probability_max";

struct WeatherTool {
    spec: ToolSpec,
    base_url: String,
    geocoding_url: String,
    connection: Connection,
}

/// The weather tool of one entry.
///
/// # Errors
/// When the entry's allowlist is unusable.
pub fn build(
    name: &str,
    tool: &ToolConfig,
    weather: &WeatherToolConfig,
    timeout: Duration,
) -> Result<Arc<dyn Tool>, BuildError> {
    let WeatherProvider::OpenMeteo = weather.provider;
    // Open-Meteo's commercial plan takes the key as `apikey` in the query.
    let auth = weather
        .api_key
        .clone()
        .map(|key| landfall_config::HttpAuth::ApiKey {
            name: "apikey".to_owned(),
            value: key,
            location: landfall_config::ApiKeyLocation::Query,
        });
    let connection = Connection::new(
        name,
        &std::collections::BTreeMap::new(),
        auth.as_ref(),
        &weather.allow_private,
        timeout,
        MAX_RESPONSE_BYTES,
    )?;
    Ok(Arc::new(WeatherTool {
        spec: ToolSpec {
            name: name.to_owned(),
            description: tool.description.clone().unwrap_or_else(|| {
                "Current weather and a daily forecast for a place (a city name) or coordinates."
                    .to_owned()
            }),
            parameters: json!({
                "type": "object",
                "properties": {
                    "location": {"type": "string", "description": "A place name, e.g. \"Hangzhou\" or \"Berlin\"."},
                    "latitude": {"type": "number", "minimum": -90, "maximum": 90},
                    "longitude": {"type": "number", "minimum": -180, "maximum": 180},
                    "days": {"type": "integer", "minimum": 1, "maximum": 16, "description": "Forecast days, 3 unless given."},
                },
                "additionalProperties": false,
            }),
            sensitive: false,
        },
        base_url: weather
            .base_url
            .as_deref()
            .unwrap_or(OPEN_METEO)
            .trim_end_matches('/')
            .to_owned(),
        geocoding_url: weather
            .geocoding_url
            .as_deref()
            .unwrap_or(OPEN_METEO_GEOCODING)
            .trim_end_matches('/')
            .to_owned(),
        connection,
    }))
}

impl WeatherTool {
    async fn get(
        &self,
        url: &str,
        query: &[(&str, String)],
        context: &ToolContext,
    ) -> Result<Value, ToolError> {
        let (status, _, body) = self
            .connection
            .send(context.deadline, |client| Ok(client.get(url).query(query)))
            .await?;
        if !status.is_success() {
            return Err(ToolError::failed(format!(
                "the weather service answered {status}: {}",
                excerpt(&body)
            )));
        }
        serde_json::from_slice(&body)
            .map_err(|_| ToolError::failed("the weather service's answer is not JSON"))
    }

    /// `(latitude, longitude, label)` of the arguments.
    async fn place(
        &self,
        arguments: &Value,
        context: &ToolContext,
    ) -> Result<(f64, f64, String), ToolError> {
        let latitude = arguments.get("latitude").and_then(Value::as_f64);
        let longitude = arguments.get("longitude").and_then(Value::as_f64);
        if let (Some(latitude), Some(longitude)) = (latitude, longitude) {
            return Ok((
                latitude,
                longitude,
                format!("{latitude:.3}, {longitude:.3}"),
            ));
        }
        let Some(location) = arguments
            .get("location")
            .and_then(Value::as_str)
            .filter(|location| !location.trim().is_empty())
        else {
            return Err(ToolError::InvalidArguments {
                message: "give `location`, or both `latitude` and `longitude`".to_owned(),
            });
        };
        let found = self
            .get(
                &format!("{}/v1/search", self.geocoding_url),
                &[("name", location.to_owned()), ("count", "1".to_owned())],
                context,
            )
            .await?;
        let place = found
            .pointer("/results/0")
            .ok_or_else(|| ToolError::failed(format!("no place called `{location}` was found")))?;
        let (Some(latitude), Some(longitude)) = (
            place.get("latitude").and_then(Value::as_f64),
            place.get("longitude").and_then(Value::as_f64),
        ) else {
            return Err(ToolError::failed("the geocoding answer has no coordinates"));
        };
        let label = [place.get("name"), place.get("admin1"), place.get("country")]
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        Ok((latitude, longitude, label))
    }
}

#[async_trait]
impl Tool for WeatherTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, arguments: Value, context: &ToolContext) -> Result<ToolOutput, ToolError> {
        let (latitude, longitude, label) = self.place(&arguments, context).await?;
        let days = arguments.get("days").and_then(Value::as_u64).unwrap_or(3);
        let forecast = self
            .get(
                &format!("{}/v1/forecast", self.base_url),
                &[
                    ("latitude", latitude.to_string()),
                    ("longitude", longitude.to_string()),
                    ("current", CURRENT.to_owned()),
                    ("daily", DAILY.to_owned()),
                    ("forecast_days", days.to_string()),
                    ("timezone", "auto".to_owned()),
                ],
                context,
            )
            .await?;
        let text = summary(&label, &forecast);
        Ok(ToolOutput {
            text,
            data: Some(
                json!({"place": label, "latitude": latitude, "longitude": longitude, "forecast": forecast}),
            ),
        })
    }
}

/// A few readable lines: now, then one line per day.
fn summary(label: &str, forecast: &Value) -> String {
    let number = |pointer: &str| forecast.pointer(pointer).and_then(Value::as_f64);
    let unit = |pointer: &str| {
        forecast
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let mut lines = vec![format!("Weather for {label}")];
    if let Some(temperature) = number("/current/temperature_2m") {
        let code = number("/current/weather_code").map_or("", describe_code);
        let mut line = format!(
            "Now: {temperature}{} {code}",
            unit("/current_units/temperature_2m")
        );
        if let Some(humidity) = number("/current/relative_humidity_2m") {
            line.push_str(&format!(", humidity {humidity}%"));
        }
        if let Some(wind) = number("/current/wind_speed_10m") {
            line.push_str(&format!(
                ", wind {wind} {}",
                unit("/current_units/wind_speed_10m")
            ));
        }
        lines.push(line);
    }
    let dates = forecast
        .pointer("/daily/time")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let daily = |field: &str, index: usize| {
        forecast
            .pointer(&format!("/daily/{field}/{index}"))
            .and_then(Value::as_f64)
    };
    for (index, date) in dates.iter().enumerate() {
        let mut line = date.as_str().unwrap_or("").to_owned();
        if let Some(code) = daily("weather_code", index) {
            line.push_str(&format!(": {}", describe_code(code)));
        }
        if let (Some(low), Some(high)) = (
            daily("temperature_2m_min", index),
            daily("temperature_2m_max", index),
        ) {
            line.push_str(&format!(
                ", {low} to {high}{}",
                unit("/daily_units/temperature_2m_max")
            ));
        }
        if let Some(rain) = daily("precipitation_sum", index) {
            line.push_str(&format!(
                ", precipitation {rain} {}",
                unit("/daily_units/precipitation_sum")
            ));
        }
        if let Some(chance) = daily("precipitation_probability_max", index) {
            line.push_str(&format!(" ({chance}% chance)"));
        }
        lines.push(line);
    }
    lines.join("\n")
}

/// WMO weather interpretation codes, as Open-Meteo documents them.
fn describe_code(code: f64) -> &'static str {
    #[expect(clippy::cast_possible_truncation, reason = "codes are small integers")]
    match code as i64 {
        0 => "clear sky",
        1 => "mainly clear",
        2 => "partly cloudy",
        3 => "overcast",
        45 | 48 => "fog",
        51 | 53 | 55 => "drizzle",
        56 | 57 => "freezing drizzle",
        61 => "light rain",
        63 => "rain",
        65 => "heavy rain",
        66 | 67 => "freezing rain",
        71 | 73 | 75 | 77 => "snow",
        80..=82 => "rain showers",
        85 | 86 => "snow showers",
        95 => "thunderstorm",
        96 | 99 => "thunderstorm with hail",
        _ => "unknown conditions",
    }
}
