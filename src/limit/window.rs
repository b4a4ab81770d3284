//! Counting windows: the calendar month (UTC) of the monthly quota and the
//! epoch-aligned fixed windows of envoyproxy/ratelimit's format. Pure; time
//! is an argument in microseconds since the Unix epoch.
//!
//! A counter's state names the window it counts in, so a counter left over
//! from an earlier window reads as zero without anyone resetting it.

use super::Outcome;

const DAY_US: u64 = 86_400_000_000;

/// Which windows a counter counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    /// Calendar months in UTC.
    Month,
    /// Fixed windows of this many seconds, aligned to the Unix epoch.
    Fixed { seconds: u64 },
}

/// A windowed counter's shape: at most `limit` per window (`None`: count,
/// never reject).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WindowSpec {
    pub window: Window,
    pub limit: Option<u64>,
}

/// A counter's stored state: `used` in the window numbered `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterState {
    pub index: u64,
    pub used: u64,
}

/// One window: its number and its span `[start_us, end_us)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub index: u64,
    pub start_us: u64,
    pub end_us: u64,
}

impl Window {
    /// The window containing `now_us`.
    pub fn span_at(&self, now_us: u64) -> Span {
        let index = match *self {
            Window::Fixed { seconds } => now_us / (seconds.max(1) * 1_000_000),
            Window::Month => {
                let (year, month, _) = civil_from_days(now_us / DAY_US);
                year * 12 + (month - 1)
            }
        };
        Span {
            index,
            start_us: self.start_of(index),
            end_us: self.start_of(index + 1),
        }
    }

    /// When window number `index` ends.
    pub fn end_of(&self, index: u64) -> u64 {
        self.start_of(index + 1)
    }

    /// When window number `index` starts.
    fn start_of(&self, index: u64) -> u64 {
        match *self {
            Window::Fixed { seconds } => index * seconds.max(1) * 1_000_000,
            Window::Month => days_from_civil(index / 12, index % 12 + 1, 1) * DAY_US,
        }
    }
}

impl WindowSpec {
    /// Charges `cost` at `now_us` if the window's limit allows it.
    pub fn charge(
        &self,
        state: Option<CounterState>,
        now_us: u64,
        cost: u64,
    ) -> (Outcome, CounterState) {
        let span = self.window.span_at(now_us);
        let used = state
            .filter(|s| s.index == span.index)
            .map_or(0, |s| s.used);
        let allowed = self
            .limit
            .is_none_or(|limit| used.saturating_add(cost) <= limit);
        let after = if allowed {
            used.saturating_add(cost)
        } else {
            used
        };
        let until_end = span.end_us - now_us;
        let outcome = Outcome {
            allowed,
            remaining: self
                .limit
                .map_or(u64::MAX, |limit| limit.saturating_sub(after)),
            reset_us: until_end,
            retry_us: if allowed { 0 } else { until_end },
        };
        (
            outcome,
            CounterState {
                index: span.index,
                used: after,
            },
        )
    }
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31), proleptic
/// Gregorian. Howard Hinnant's `civil_from_days`, for non-negative days.
pub fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) → days since 1970-01-01; the inverse of
/// [`civil_from_days`] for dates from 1970 on.
pub fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000;

    /// 2026-12-31T23:59:59Z and the next second.
    const LAST_SECOND_OF_2026: u64 = 1_798_761_599 * SEC;

    #[test]
    fn calendar_round_trips() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_819), (2027, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        for days in (0..80_000).step_by(13) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn month_spans_follow_the_calendar() {
        let dec = Window::Month.span_at(LAST_SECOND_OF_2026);
        assert_eq!(dec.end_us, LAST_SECOND_OF_2026 + SEC);
        assert_eq!(dec.end_us - dec.start_us, 31 * DAY_US);
        let jan = Window::Month.span_at(LAST_SECOND_OF_2026 + SEC);
        assert_eq!(jan.index, dec.index + 1);
        assert_eq!(jan.start_us, dec.end_us);
        let feb_2028 = Window::Month.span_at(days_from_civil(2028, 2, 10) * DAY_US);
        assert_eq!(
            feb_2028.end_us - feb_2028.start_us,
            29 * DAY_US,
            "leap year"
        );
    }

    #[test]
    fn monthly_quota_resets_at_the_turn_of_the_month_utc() {
        let spec = WindowSpec {
            window: Window::Month,
            limit: Some(3),
        };
        let mut state = None;
        for _ in 0..3 {
            let (out, next) = spec.charge(state, LAST_SECOND_OF_2026, 1);
            assert!(out.allowed);
            state = Some(next);
        }
        let (out, _) = spec.charge(state, LAST_SECOND_OF_2026, 1);
        assert!(!out.allowed);
        assert_eq!(out.retry_us, SEC, "allowed again at midnight UTC");
        assert_eq!(out.reset_us, SEC);
        let (out, next) = spec.charge(state, LAST_SECOND_OF_2026 + SEC, 1);
        assert!(out.allowed);
        assert_eq!(next.used, 1);
        assert_eq!(out.remaining, 2);
    }

    #[test]
    fn a_charge_that_would_cross_the_limit_is_refused_whole() {
        let spec = WindowSpec {
            window: Window::Month,
            limit: Some(3),
        };
        let state = Some(CounterState {
            index: Window::Month.span_at(0).index,
            used: 2,
        });
        let (out, next) = spec.charge(state, 0, 2);
        assert!(!out.allowed);
        assert_eq!(next.used, 2);
        assert_eq!(out.remaining, 1);
    }

    #[test]
    fn unlimited_counts_and_never_rejects() {
        let spec = WindowSpec {
            window: Window::Month,
            limit: None,
        };
        let index = Window::Month.span_at(0).index;
        let (out, next) = spec.charge(
            Some(CounterState {
                index,
                used: u64::MAX - 1,
            }),
            0,
            5,
        );
        assert!(out.allowed);
        assert_eq!(next.used, u64::MAX);
    }

    #[test]
    fn fixed_windows_align_to_the_epoch() {
        let minute = Window::Fixed { seconds: 60 };
        let span = minute.span_at(90 * SEC);
        assert_eq!(
            (span.index, span.start_us, span.end_us),
            (1, 60 * SEC, 120 * SEC)
        );
        let spec = WindowSpec {
            window: minute,
            limit: Some(1),
        };
        let (first, state) = spec.charge(None, 119 * SEC, 1);
        assert!(first.allowed);
        let (second, _) = spec.charge(Some(state), 119 * SEC, 1);
        assert!(!second.allowed);
        let (third, _) = spec.charge(Some(state), 120 * SEC, 1);
        assert!(
            third.allowed,
            "a new window starts at the epoch-aligned boundary"
        );
    }
}
