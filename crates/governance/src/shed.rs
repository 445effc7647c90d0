//! CPU-aware load shedding: machine CPU use is sampled from `/proc/stat`; above the threshold,
//! requests for long generations are refused or capped while short ones pass.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use landfall_config::{ShedPolicy, SheddingConfig};
use landfall_types::ChatRequest;

use crate::GovernanceError;

/// The latest CPU use of the machine, in percent.
#[derive(Debug, Default)]
pub struct CpuLoad(AtomicU8);

impl CpuLoad {
    #[must_use]
    pub fn percent(&self) -> u8 {
        self.0.load(Ordering::Relaxed)
    }

    /// Records a sample (the sampler does; so can an operator's own probe or a test).
    pub fn record(&self, percent: u8) {
        self.0.store(percent.min(100), Ordering::Relaxed);
    }
}

/// What shedding did to a request it let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// `max_tokens` was lowered to this bound.
    Capped(u64),
}

/// Applies the policy to `request` at the current load.
pub(crate) fn apply(
    config: &SheddingConfig,
    load: &CpuLoad,
    request: &mut ChatRequest,
) -> Result<Option<Shed>, GovernanceError> {
    if !config.enabled || load.percent() < config.cpu_threshold_percent {
        return Ok(None);
    }
    let bound = config.long_generation_tokens;
    let asked = request.max_output_tokens().map(u64::from);
    if asked.is_some_and(|asked| asked <= bound) {
        return Ok(None);
    }
    match config.policy {
        ShedPolicy::Reject => Err(GovernanceError::Overloaded {
            max_tokens: bound,
            retry_after: Duration::from_millis(config.retry_after_ms),
        }),
        ShedPolicy::Cap => {
            let capped = u32::try_from(bound).unwrap_or(u32::MAX);
            if request.max_completion_tokens.is_some() {
                request.max_completion_tokens = Some(capped);
            } else {
                request.max_tokens = Some(capped);
            }
            Ok(Some(Shed::Capped(bound)))
        }
    }
}

/// Samples CPU use every `interval` until the returned task is aborted. The first sample
/// lands after one interval.
pub(crate) fn spawn_sampler(
    load: Arc<CpuLoad>,
    interval: Duration,
) -> Option<tokio::task::JoinHandle<()>> {
    let mut previous = read_proc_stat()?;
    Some(tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let Some(current) = read_proc_stat() else {
                continue;
            };
            if let Some(percent) = busy_percent(previous, current) {
                load.record(percent);
            }
            previous = current;
        }
    }))
}

/// (busy, total) jiffies from the first line of `/proc/stat`.
fn read_proc_stat() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    parse_cpu_line(text.lines().next()?)
}

fn parse_cpu_line(line: &str) -> Option<(u64, u64)> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let values: Vec<u64> = fields.filter_map(|field| field.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3)? + values.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

fn busy_percent(previous: (u64, u64), current: (u64, u64)) -> Option<u8> {
    let total = current.1.checked_sub(previous.1)?;
    let busy = current.0.checked_sub(previous.0)?;
    if total == 0 {
        return None;
    }
    u8::try_from(busy * 100 / total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_lines_parse() {
        let line = "cpu  100 0 50 800 50 0 0 0 0 0";
        assert_eq!(parse_cpu_line(line), Some((150, 1000)));
        assert_eq!(parse_cpu_line("cpu0 1 2 3 4"), None);
        assert_eq!(busy_percent((150, 1000), (240, 1100)), Some(90));
        assert_eq!(busy_percent((150, 1000), (150, 1000)), None);
    }

    #[test]
    fn long_generations_are_shed_only_above_the_threshold() {
        let config = SheddingConfig::default();
        let load = CpuLoad::default();
        let mut request: ChatRequest =
            serde_json::from_value(serde_json::json!({"model": "m", "messages": []})).unwrap();
        assert_eq!(apply(&config, &load, &mut request).ok(), Some(None));
        load.record(95);
        assert!(matches!(
            apply(&config, &load, &mut request),
            Err(GovernanceError::Overloaded { .. })
        ));
        request.max_tokens = Some(100);
        assert_eq!(apply(&config, &load, &mut request).ok(), Some(None));
        let cap = SheddingConfig {
            policy: ShedPolicy::Cap,
            ..config
        };
        request.max_tokens = Some(100_000);
        assert_eq!(
            apply(&cap, &load, &mut request).ok(),
            Some(Some(Shed::Capped(2048)))
        );
        assert_eq!(request.max_tokens, Some(2048));
    }

    #[tokio::test]
    async fn the_sampler_sees_a_busy_machine() {
        let load = Arc::new(CpuLoad::default());
        let Some(sampler) = spawn_sampler(Arc::clone(&load), Duration::from_millis(300)) else {
            eprintln!("skipped: /proc/stat is not readable here");
            return;
        };
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let burners: Vec<_> = (0..std::thread::available_parallelism().map_or(2, usize::from))
            .map(|_| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = x.wrapping_mul(31).wrapping_add(1);
                    }
                    x
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        let seen = load.percent();
        stop.store(true, Ordering::Relaxed);
        for burner in burners {
            let _ = burner.join();
        }
        sampler.abort();
        assert!(seen >= 80, "CPU use seen while every core spun: {seen}%");
    }
}
