//! The JSON-RPC 2.0 envelope: how a request body becomes calls, before any method runs.
//!
//! It lives here rather than in the node so that the parser of the bytes a cookie holder
//! sends can be tested and fuzzed without the daemon. The body is parsed once, with the batch
//! length bounded while it is read: a batch longer than [`MAX_BATCH_LEN`] is refused as a
//! whole, with nothing run, and its elements past the limit are skipped without building
//! them.

use std::fmt;

use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde_json::{Map, Value, json};

use crate::code;

/// The most calls one batch may hold. The largest request body (1 MiB) holds half a million
/// one-byte elements; answering each would make a response fifty times the request.
pub const MAX_BATCH_LEN: usize = 100;

/// Once the answers of a batch total this many bytes, its remaining calls are not run: each
/// gets a short [`code::RESPONSE_TOO_LARGE`] error instead. The answer that crosses the limit
/// is still sent, so a batch's response is at most this plus one answer (which the same call
/// alone would also produce) plus [`MAX_BATCH_LEN`] short errors.
pub const MAX_BATCH_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// One call of a request body, checked against the JSON-RPC rules.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// A well-formed request, to be run.
    Request {
        /// Its id; `None` for a notification, which runs but gets no answer.
        id: Option<Value>,
        /// The method name.
        method: String,
        /// Its parameters: `null`, an object or an array.
        params: Value,
    },
    /// Not a valid request: answered with this error, never run.
    Invalid {
        /// The id to answer with (`null` when the request's own id is unusable).
        id: Value,
        /// The JSON-RPC error code.
        code: i64,
        /// What is wrong.
        message: String,
    },
}

impl Call {
    /// The id its answer carries, or `None` when it gets no answer (a notification).
    pub fn reply_id(&self) -> Option<Value> {
        match self {
            Call::Request { id, .. } => id.clone(),
            Call::Invalid { id, .. } => Some(id.clone()),
        }
    }
}

/// What a request body is.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// One call.
    Single(Call),
    /// A batch of one to [`MAX_BATCH_LEN`] calls, in order.
    Batch(Vec<Call>),
    /// The body as a whole is refused, with one error whose id is `null`: invalid JSON, an
    /// empty batch or a batch longer than [`MAX_BATCH_LEN`].
    Refused {
        /// The JSON-RPC error code.
        code: i64,
        /// What is wrong.
        message: String,
    },
}

/// Parses a request body.
pub fn parse_body(body: &[u8]) -> Body {
    let is_batch = body
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        == Some(&b'[');
    let parse_error = |e: serde_json::Error| Body::Refused {
        code: code::PARSE_ERROR,
        message: format!("parse error: {e}"),
    };
    if !is_batch {
        return match serde_json::from_slice::<Value>(body) {
            Ok(value) => Body::Single(parse_call(value)),
            Err(e) => parse_error(e),
        };
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let (items, len) = match deserializer
        .deserialize_seq(BoundedBatch)
        .and_then(|batch| deserializer.end().map(|()| batch))
    {
        Ok(batch) => batch,
        Err(e) => return parse_error(e),
    };
    if len == 0 {
        Body::Refused {
            code: code::INVALID_REQUEST,
            message: "empty batch".into(),
        }
    } else if len > MAX_BATCH_LEN {
        Body::Refused {
            code: code::INVALID_REQUEST,
            message: format!(
                "a batch of {len} calls; at most {MAX_BATCH_LEN} per batch (nothing was run)"
            ),
        }
    } else {
        Body::Batch(items.into_iter().map(parse_call).collect())
    }
}

/// Reads a batch's first [`MAX_BATCH_LEN`] + 1 elements and only counts the rest.
struct BoundedBatch;

impl<'de> Visitor<'de> for BoundedBatch {
    type Value = (Vec<Value>, usize);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-RPC batch (an array of requests)")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while items.len() <= MAX_BATCH_LEN {
            match seq.next_element::<Value>()? {
                Some(item) => items.push(item),
                None => {
                    let len = items.len();
                    return Ok((items, len));
                }
            }
        }
        let mut len = items.len();
        while seq.next_element::<IgnoredAny>()?.is_some() {
            len += 1;
        }
        Ok((items, len))
    }
}

/// Checks one request object.
pub fn parse_call(request: Value) -> Call {
    let invalid = |id: Value, code: i64, message: &str| Call::Invalid {
        id,
        code,
        message: message.into(),
    };
    let Value::Object(mut map) = request else {
        return invalid(
            Value::Null,
            code::INVALID_REQUEST,
            "a request must be a JSON object",
        );
    };
    let id = map.remove("id");
    let reply_id = id.clone().unwrap_or(Value::Null);
    match map.get("jsonrpc") {
        // Accepting requests without the field keeps JSON-RPC 1.0 clients (bitcoin-cli
        // style) working.
        None => {}
        Some(Value::String(v)) if v == "2.0" => {}
        Some(_) => {
            return invalid(reply_id, code::INVALID_REQUEST, "jsonrpc must be \"2.0\"");
        }
    }
    if !matches!(
        id,
        None | Some(Value::Null | Value::String(_) | Value::Number(_))
    ) {
        return invalid(
            Value::Null,
            code::INVALID_REQUEST,
            "id must be a string, number or null",
        );
    }
    let Some(Value::String(method)) = map.remove("method") else {
        return invalid(reply_id, code::INVALID_REQUEST, "method must be a string");
    };
    let params = map.remove("params").unwrap_or(Value::Null);
    if !matches!(params, Value::Null | Value::Object(_) | Value::Array(_)) {
        return invalid(
            reply_id,
            code::INVALID_PARAMS,
            "params must be an object or an array",
        );
    }
    Call::Request { id, method, params }
}

/// A JSON-RPC error answer.
pub fn error_response(id: Value, code: i64, message: &str, data: Option<&Value>) -> Value {
    let mut error = Map::new();
    error.insert("code".into(), code.into());
    error.insert("message".into(), message.into());
    if let Some(data) = data {
        error.insert("data".into(), data.clone());
    }
    json!({ "jsonrpc": "2.0", "error": error, "id": id })
}

/// A JSON-RPC success answer.
pub fn result_response(id: Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "result": result, "id": id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_bounded_while_read() {
        let long = format!("[{}1]", "1,".repeat(MAX_BATCH_LEN));
        assert!(matches!(
            parse_body(long.as_bytes()),
            Body::Refused { code: code::INVALID_REQUEST, message } if message.contains("101 calls")
        ));
        let full = format!("[{}1]", "1,".repeat(MAX_BATCH_LEN - 1));
        assert!(
            matches!(parse_body(full.as_bytes()), Body::Batch(calls) if calls.len() == MAX_BATCH_LEN)
        );
        assert!(matches!(
            parse_body(b" []"),
            Body::Refused {
                code: code::INVALID_REQUEST,
                ..
            }
        ));
        // Garbage after a long batch is still a parse error, not a length error.
        let broken = format!("[{}1] x", "1,".repeat(MAX_BATCH_LEN + 5));
        assert!(matches!(
            parse_body(broken.as_bytes()),
            Body::Refused {
                code: code::PARSE_ERROR,
                ..
            }
        ));
        assert!(matches!(
            parse_body(b"[1,"),
            Body::Refused {
                code: code::PARSE_ERROR,
                ..
            }
        ));
    }
}
