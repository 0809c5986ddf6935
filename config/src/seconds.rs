//! Durations written in the file as JSON numbers of seconds.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Unexpected, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration given in the file as a finite, non-negative number of seconds (`0.15`, `30`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Seconds(Duration);

impl Seconds {
    /// Whole seconds, for defaults written in code.
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    /// Milliseconds, for defaults below one second.
    pub const fn from_millis(millis: u64) -> Self {
        Self(Duration::from_millis(millis))
    }

    /// Checks a number of seconds read from input: finite, non-negative and representable.
    pub fn try_from_secs_f64(secs: f64) -> Option<Self> {
        if !secs.is_finite() || secs < 0.0 {
            return None;
        }
        Duration::try_from_secs_f64(secs).ok().map(Self)
    }

    /// The value as a `Duration`, which is what timers want.
    pub const fn as_duration(self) -> Duration {
        self.0
    }

    /// The value as fractional seconds, which is how the file writes it.
    pub fn as_secs_f64(self) -> f64 {
        self.0.as_secs_f64()
    }
}

impl From<Duration> for Seconds {
    fn from(duration: Duration) -> Self {
        Self(duration)
    }
}

impl From<Seconds> for Duration {
    fn from(seconds: Seconds) -> Self {
        seconds.0
    }
}

impl fmt::Debug for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.as_secs_f64())
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} s", self.as_secs_f64())
    }
}

impl Serialize for Seconds {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0.subsec_nanos() == 0 {
            serializer.serialize_u64(self.0.as_secs())
        } else {
            serializer.serialize_f64(self.as_secs_f64())
        }
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SecondsVisitor)
    }
}

/// Accepts JSON integers and floats and rejects everything else with a clear expectation.
struct SecondsVisitor;

impl Visitor<'_> for SecondsVisitor {
    type Value = Seconds;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a non-negative number of seconds")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds, E> {
        Ok(Seconds(Duration::from_secs(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
        u64::try_from(v)
            .map(|v| Seconds(Duration::from_secs(v)))
            .map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Seconds, E> {
        Seconds::try_from_secs_f64(v).ok_or_else(|| E::invalid_value(Unexpected::Float(v), &self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Seconds, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn accepts_integers_and_fractions() {
        assert_eq!(parse("5").unwrap().as_duration(), Duration::from_secs(5));
        assert_eq!(
            parse("0.005").unwrap().as_duration(),
            Duration::from_millis(5)
        );
        assert_eq!(parse("0").unwrap().as_duration(), Duration::ZERO);
    }

    #[test]
    fn rejects_negative_huge_and_non_numbers() {
        assert!(parse("-1")
            .unwrap_err()
            .contains("non-negative number of seconds"));
        assert!(parse("-0.5").unwrap_err().contains("non-negative"));
        assert!(parse("1e300").unwrap_err().contains("non-negative"));
        assert!(parse("\"5\"").unwrap_err().contains("invalid type: string"));
        assert!(Seconds::try_from_secs_f64(f64::NAN).is_none());
        assert!(Seconds::try_from_secs_f64(f64::INFINITY).is_none());
    }

    #[test]
    fn serializes_whole_seconds_as_integers() {
        assert_eq!(
            serde_json::to_string(&Seconds::from_secs(30)).unwrap(),
            "30"
        );
        assert_eq!(
            serde_json::to_string(&Seconds::from_millis(150)).unwrap(),
            "0.15"
        );
    }
}
