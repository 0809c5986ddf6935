//! Unix timestamps as they travel on the wire.

use serde::{Deserialize, Deserializer, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Unix time in whole seconds, never zero: every event says when it happened, so that events
/// applied late (after an outage) are accounted at their own time, not at the time of receipt.
///
/// On input it accepts an integer or a fractional number of seconds (fractions are dropped);
/// zero, negative and non-finite values are rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Self {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1);
        Timestamp(i64::try_from(secs).unwrap_or(i64::MAX).max(1))
    }

    /// A timestamp from Unix seconds; `None` for zero or negative values.
    pub fn from_secs(secs: i64) -> Option<Self> {
        (secs > 0).then_some(Timestamp(secs))
    }

    /// A timestamp from Unix milliseconds (CyTube's clock); `None` for non-positive values.
    pub fn from_millis(millis: i64) -> Option<Self> {
        Self::from_secs(millis.div_euclid(1000))
    }

    /// The Unix seconds.
    pub fn secs(self) -> i64 {
        self.0
    }

    /// RFC 3339 in UTC (`2026-12-06T07:06:25Z`), for logs, files and status answers. A time past
    /// the year 9999, which only a hostile payload carries, is written as its last second.
    pub fn rfc3339(self) -> String {
        let secs = u64::try_from(self.0.clamp(1, LAST_RFC3339_SECOND)).unwrap_or(1);
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
    }
}

/// 9999-12-31T23:59:59Z: RFC 3339 has four-digit years, and humantime refuses anything later.
const LAST_RFC3339_SECOND: i64 = 253_402_300_799;

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = f64::deserialize(deserializer)?;
        if !raw.is_finite() || raw < 1.0 || raw > i64::MAX as f64 {
            return Err(serde::de::Error::custom(format!(
                "timestamp must be positive Unix seconds, got {raw}"
            )));
        }
        Ok(Timestamp(raw.floor() as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_is_utc_and_never_fails() {
        let at = |secs| Timestamp::from_secs(secs).unwrap().rfc3339();
        assert_eq!(at(1), "1970-01-01T00:00:01Z");
        assert_eq!(at(1_704_067_200), "2024-01-01T00:00:00Z");
        assert_eq!(at(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(at(i64::MAX), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn accepts_integers_and_fractions_rejects_zero() {
        let t: Timestamp = serde_json::from_str("1700000000").unwrap();
        assert_eq!(t.secs(), 1_700_000_000);
        let t: Timestamp = serde_json::from_str("1700000000.9").unwrap();
        assert_eq!(t.secs(), 1_700_000_000);
        assert!(serde_json::from_str::<Timestamp>("0").is_err());
        assert!(serde_json::from_str::<Timestamp>("-5").is_err());
        assert!(serde_json::from_str::<Timestamp>("\"1700000000\"").is_err());
        assert_eq!(serde_json::to_string(&t).unwrap(), "1700000000");
    }

    #[test]
    fn now_is_positive_and_millis_convert() {
        assert!(Timestamp::now().secs() > 1_600_000_000);
        assert_eq!(
            Timestamp::from_millis(1_700_000_000_999).unwrap().secs(),
            1_700_000_000
        );
        assert!(Timestamp::from_millis(999).is_none());
    }
}
