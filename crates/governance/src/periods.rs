//! Calendar periods of budgets, in UTC.

use std::sync::{Arc, Mutex};

use landfall_storage::{BudgetPeriod, UnixMillis};
use time::{Date, Month, OffsetDateTime, Time};

/// The period containing an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Window {
    /// `d20261129` or `m202611`: part of counter keys.
    pub label: String,
    pub start: UnixMillis,
    pub end: UnixMillis,
}

/// The day and month containing an instant.
#[derive(Debug)]
pub(crate) struct Windows {
    day_index: i64,
    pub day: Window,
    pub month: Window,
}

impl Windows {
    pub(crate) fn get(&self, period: BudgetPeriod) -> &Window {
        match period {
            BudgetPeriod::Day => &self.day,
            BudgetPeriod::Month => &self.month,
        }
    }
}

/// The windows of `now`, computed once per UTC day and shared (every request with a budget
/// needs them).
pub(crate) fn windows(now: UnixMillis) -> Arc<Windows> {
    static CURRENT: Mutex<Option<Arc<Windows>>> = Mutex::new(None);
    let day_index = now.div_euclid(86_400_000);
    let Ok(mut current) = CURRENT.lock() else {
        return Arc::new(compute(now, day_index));
    };
    match &*current {
        Some(windows) if windows.day_index == day_index => Arc::clone(windows),
        _ => {
            let windows = Arc::new(compute(now, day_index));
            *current = Some(Arc::clone(&windows));
            windows
        }
    }
}

fn compute(now: UnixMillis, day_index: i64) -> Windows {
    Windows {
        day_index,
        day: window(BudgetPeriod::Day, now),
        month: window(BudgetPeriod::Month, now),
    }
}

pub(crate) fn window(period: BudgetPeriod, now: UnixMillis) -> Window {
    let instant = OffsetDateTime::from_unix_timestamp_nanos(i128::from(now) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let date = instant.date();
    let (label, start, end) = match period {
        BudgetPeriod::Day => {
            let next = date.next_day().unwrap_or(date);
            (
                format!(
                    "d{:04}{:02}{:02}",
                    date.year(),
                    u8::from(date.month()),
                    date.day()
                ),
                date,
                next,
            )
        }
        BudgetPeriod::Month => {
            let first = Date::from_calendar_date(date.year(), date.month(), 1).unwrap_or(date);
            let (year, month) = match date.month() {
                Month::December => (date.year() + 1, Month::January),
                month => (date.year(), month.next()),
            };
            let next = Date::from_calendar_date(year, month, 1).unwrap_or(first);
            (
                format!("m{:04}{:02}", date.year(), u8::from(date.month())),
                first,
                next,
            )
        }
    };
    Window {
        label,
        start: midnight_millis(start),
        end: midnight_millis(end),
    }
}

fn midnight_millis(date: Date) -> UnixMillis {
    let nanos = date
        .with_time(Time::MIDNIGHT)
        .assume_utc()
        .unix_timestamp_nanos();
    i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-29T15:00:00Z
    const NOW: UnixMillis = 1_795_964_400_000;

    #[test]
    fn day_and_month_windows() {
        let day = window(BudgetPeriod::Day, NOW);
        assert_eq!(day.label, "d20261129");
        assert_eq!(day.start, 1_795_910_400_000);
        assert_eq!(day.end, day.start + 86_400_000);
        let month = window(BudgetPeriod::Month, NOW);
        assert_eq!(month.label, "m202611");
        assert_eq!(month.start, 1_793_491_200_000);
        assert_eq!(month.end, 1_796_083_200_000);
    }

    #[test]
    fn shared_windows_follow_the_day() {
        let today = windows(NOW);
        assert_eq!(today.get(BudgetPeriod::Day).label, "d20261129");
        assert!(Arc::ptr_eq(&today, &windows(NOW + 1_000)));
        let tomorrow = windows(NOW + 86_400_000);
        assert_eq!(tomorrow.day.label, "d20261130");
        assert_eq!(tomorrow.month.label, "m202611");
    }

    #[test]
    fn december_rolls_into_january() {
        // 2026-12-31T23:59:59Z
        let month = window(BudgetPeriod::Month, 1_798_761_599_000);
        assert_eq!(month.label, "m202612");
        assert_eq!(month.end, 1_798_761_600_000);
    }
}
