//! Unix timestamps as they travel on the wire.

use serde::{Deserialize, Deserializer, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

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
}

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
