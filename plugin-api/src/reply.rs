//! Building and reading replies with async-nats: the success body, the error reply with its
//! headers, and a typed request helper that turns either into a `Result`.

use crate::error::{ErrorBody, ErrorCode, HEADER_CODE, HEADER_MESSAGE};
use async_nats::{Client, HeaderMap, Message};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;
use thiserror::Error;

/// The headers and body of an error reply, ready to publish on a reply subject.
pub fn error_reply(body: &ErrorBody) -> (HeaderMap, Bytes) {
    let mut headers = HeaderMap::new();
    headers.insert(HEADER_CODE, body.error.code.status().to_string().as_str());
    // Header values cannot hold line breaks; the body keeps the full text.
    let one_line: String = body
        .error
        .message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    headers.insert(HEADER_MESSAGE, one_line.as_str());
    (headers, Bytes::from(body.to_json()))
}

/// Serializes a success reply; a value that cannot be serialized becomes an internal error.
pub fn ok_reply<T: Serialize>(value: &T) -> Result<Bytes, ErrorBody> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| ErrorBody::new(ErrorCode::Internal, format!("cannot encode reply: {e}")))
}

/// Why a typed request did not produce a value.
#[derive(Debug, Error)]
pub enum RequestError {
    /// The payload could not be encoded.
    #[error("cannot encode request: {0}")]
    Encode(#[source] serde_json::Error),
    /// Nobody answered in time, or NATS failed.
    #[error("request to {subject} failed: {source}")]
    Nats {
        /// The request subject.
        subject: String,
        /// The client's error.
        #[source]
        source: async_nats::RequestError,
    },
    /// No answer within the timeout.
    #[error("request to {subject} timed out after {timeout:?}")]
    Timeout {
        /// The request subject.
        subject: String,
        /// How long it waited.
        timeout: Duration,
    },
    /// The service answered with an error reply.
    #[error("{subject} answered {0}", subject = .1)]
    Service(ErrorBody, String),
    /// The reply was not what the contract says.
    #[error("unexpected reply from {subject}: {source}")]
    Decode {
        /// The request subject.
        subject: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
}

/// Reads a reply: an error reply (by header or by body) becomes `Err`, anything else is
/// decoded as `T`.
pub fn parse_reply<T: DeserializeOwned>(subject: &str, msg: &Message) -> Result<T, RequestError> {
    let flagged = msg
        .headers
        .as_ref()
        .and_then(|h| h.get(HEADER_CODE))
        .is_some();
    if let Some(body) = ErrorBody::from_reply(flagged, &msg.payload) {
        return Err(RequestError::Service(body, subject.to_owned()));
    }
    if flagged {
        // An error reply whose body is not ours (another service's): the header says why.
        let text = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(HEADER_MESSAGE))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        return Err(RequestError::Service(
            ErrorBody::new(ErrorCode::Internal, text),
            subject.to_owned(),
        ));
    }
    serde_json::from_slice(&msg.payload).map_err(|source| RequestError::Decode {
        subject: subject.to_owned(),
        source,
    })
}

/// Sends a JSON request and decodes the reply, with a timeout.
pub async fn request_json<Req: Serialize, Resp: DeserializeOwned>(
    client: &Client,
    subject: &str,
    payload: &Req,
    timeout: Duration,
) -> Result<Resp, RequestError> {
    let body = serde_json::to_vec(payload).map_err(RequestError::Encode)?;
    let request = async_nats::Request::new()
        .payload(Bytes::from(body))
        .timeout(Some(timeout));
    let msg = client
        .send_request(subject.to_owned(), request)
        .await
        .map_err(|source| match source.kind() {
            async_nats::RequestErrorKind::TimedOut => RequestError::Timeout {
                subject: subject.to_owned(),
                timeout,
            },
            _ => RequestError::Nats {
                subject: subject.to_owned(),
                source,
            },
        })?;
    parse_reply(subject, &msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_reply_sets_headers_and_body() {
        let body = ErrorBody::new(ErrorCode::TooLarge, "value is 300 KiB\nlimit 256 KiB");
        let (headers, payload) = error_reply(&body);
        assert_eq!(headers.get(HEADER_CODE).unwrap().as_str(), "413");
        assert_eq!(
            headers.get(HEADER_MESSAGE).unwrap().as_str(),
            "value is 300 KiB limit 256 KiB"
        );
        let back: ErrorBody = serde_json::from_slice(&payload).unwrap();
        assert_eq!(back, body);
    }
}
