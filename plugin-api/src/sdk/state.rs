//! Versioned state bytes handed from one generation of a plugin to the next.
//!
//! The SDK frames what a plugin saves as `RSST`, a little-endian `u32` version, then the
//! plugin's bytes, so a new build can tell whether it understands what the old one left.

use super::error::{Error, ErrorKind, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

const MAGIC: &[u8; 4] = b"RSST";

/// State a plugin saves for its next generation, with the format version it was written in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedState {
    /// The plugin's own format version; bump it when the layout of `bytes` changes.
    pub version: u32,
    /// The plugin's bytes.
    pub bytes: Vec<u8>,
}

impl SavedState {
    /// State from raw bytes.
    pub fn new(version: u32, bytes: Vec<u8>) -> Self {
        SavedState { version, bytes }
    }

    /// State as the JSON text of `value`.
    pub fn json<T: Serialize>(version: u32, value: &T) -> Result<Self> {
        Ok(SavedState::new(version, serde_json::to_vec(value)?))
    }

    /// Decodes JSON state written in `expected_version`; `Ok(None)` when it was written in
    /// another version (the plugin then starts fresh or migrates by hand).
    pub fn decode_json<T: DeserializeOwned>(&self, expected_version: u32) -> Result<Option<T>> {
        if self.version != expected_version {
            return Ok(None);
        }
        Ok(Some(serde_json::from_slice(&self.bytes)?))
    }

    /// The framed bytes that cross the boundary.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.bytes.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.bytes);
        out
    }

    /// Reads framed bytes; an empty input means "nothing saved".
    pub(crate) fn decode(framed: &[u8]) -> Result<Option<SavedState>> {
        if framed.is_empty() {
            return Ok(None);
        }
        let bad = || Error::new(ErrorKind::Invalid, "saved state is not in the SDK's format");
        let rest = framed.strip_prefix(MAGIC.as_slice()).ok_or_else(bad)?;
        let (version, bytes) = rest.split_at_checked(4).ok_or_else(bad)?;
        let version = u32::from_le_bytes(version.try_into().map_err(|_| bad())?);
        Ok(Some(SavedState::new(version, bytes.to_vec())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_reject_garbage() {
        let s = SavedState::json(3, &vec![1, 2, 3]).unwrap();
        let back = SavedState::decode(&s.encode()).unwrap().unwrap();
        assert_eq!(back, s);
        assert_eq!(
            back.decode_json::<Vec<i32>>(3).unwrap(),
            Some(vec![1, 2, 3])
        );
        assert_eq!(back.decode_json::<Vec<i32>>(4).unwrap(), None);
        assert!(SavedState::decode(b"").unwrap().is_none());
        assert!(SavedState::decode(b"junk").is_err());
        assert!(SavedState::decode(b"RSST\x01").is_err());
    }
}
