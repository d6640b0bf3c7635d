//! Console lines at a bounded rate: at most one per period, and only while
//! something happens. Pure.
#![forbid(unsafe_code)]

/// When the next summary line of a counter may be printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateWindow {
    period_ms: u64,
    last_line_ms: Option<u64>,
    first_event_ms: Option<u64>,
}

impl RateWindow {
    /// At most one line per `period_ms`.
    pub fn new(period_ms: u64) -> RateWindow {
        RateWindow {
            period_ms,
            last_line_ms: None,
            first_event_ms: None,
        }
    }

    /// Something worth counting happened at `now_ms`.
    pub fn note(&mut self, now_ms: u64) {
        if self.first_event_ms.is_none() {
            self.first_event_ms = Some(now_ms);
        }
    }

    /// Whether a line is due at `now_ms`: something happened since the last
    /// line and the last line is at least a period old (the first line of a
    /// quiet server is due at once). Returns the seconds the line covers
    /// (rounded, at least 1) and starts a new window.
    pub fn due(&mut self, now_ms: u64) -> Option<u64> {
        let first = self.first_event_ms?;
        if let Some(last) = self.last_line_ms {
            if now_ms.saturating_sub(last) < self.period_ms {
                return None;
            }
        }
        let since = self
            .last_line_ms
            .filter(|last| now_ms.saturating_sub(*last) <= self.period_ms.saturating_mul(2))
            .unwrap_or(first)
            .min(first);
        self.last_line_ms = Some(now_ms);
        self.first_event_ms = None;
        Some((now_ms.saturating_sub(since).saturating_add(500) / 1000).max(1))
    }
}
