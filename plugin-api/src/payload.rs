//! Decoding payloads off the wire the one way every process does it.

use crate::error::{ErrorBody, ErrorCode};
use serde::de::DeserializeOwned;

/// Decodes a payload, which the contract says is a JSON object.
///
/// serde would also read a struct from a JSON array (`[3, 5]` as positional fields), which no
/// publisher means; this refuses anything but an object before decoding, and classifies the
/// failure with the contract's error codes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ErrorBody> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(40)]).into_owned();
        return Err(ErrorBody::new(
            ErrorCode::InvalidJson,
            format!("payload must be a JSON object, got {shown:?}"),
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| ErrorBody::from_json_error(&e))
}

/// [`decode`] for a value already parsed (used by tests and tools).
pub fn decode_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ErrorBody> {
    if !value.is_object() {
        return Err(ErrorBody::new(
            ErrorCode::InvalidJson,
            "payload must be a JSON object",
        ));
    }
    serde_json::from_value(value).map_err(|e| ErrorBody::from_json_error(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::StatsUserCount;

    #[test]
    fn only_objects_decode() {
        assert!(decode::<StatsUserCount>(b"[3, 5]").is_err());
        assert!(decode::<StatsUserCount>(b"").is_err());
        assert!(decode::<StatsUserCount>(b"null").is_err());
        let c: StatsUserCount = decode(b" {\"chat_count\": 3}").unwrap();
        assert_eq!(c.chat_count, 3);
        let e = decode::<StatsUserCount>(b"{\"chat_count\": \"x\"}").unwrap_err();
        assert_eq!(e.error.code, ErrorCode::InvalidJson);
    }
}
