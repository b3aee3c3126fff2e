use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::AppState;

/// JSON body extractor: requires `application/json`, enforces the body and nesting limits
/// before parsing, and reports the exact field path of type errors and unknown fields.
pub struct ApiJson<T>(pub T);

/// Deepest nesting of arrays/objects in `bytes`, stopping early once past `limit`.
fn nesting_exceeds(bytes: &[u8], limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

fn is_json(req: &Request) -> bool {
    req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).and_then(|v| v.split(';').next()).is_some_and(
        |mime| {
            let mime = mime.trim();
            mime.eq_ignore_ascii_case("application/json") || mime.to_ascii_lowercase().ends_with("+json")
        },
    )
}

/// Parses `bytes` to a JSON value, refusing excessive nesting before parsing.
pub(crate) fn parse_value(bytes: &[u8], max_depth: usize) -> Result<serde_json::Value, ApiError> {
    if nesting_exceeds(bytes, max_depth) {
        return Err(ApiError::bad_request(None, format!("JSON nesting deeper than {max_depth} levels")));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde::de::DeserializeSeed::deserialize(Strict, &mut de).and_then(|v| de.end().map(|()| v));
    value.map_err(|e| ApiError::bad_request(None, format!("malformed JSON: {}", strip_position(&e.to_string()))))
}

/// Builds a JSON value like serde_json does, but refuses duplicate object keys: with
/// "last wins", `{"role": "viewer", "role": "admin"}` would mean different things to
/// different readers (a proxy's filter and this server, say).
struct Strict;

impl<'de> serde::de::DeserializeSeed<'de> for Strict {
    type Value = serde_json::Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Strict {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Strict)? {
            out.push(v);
        }
        Ok(serde_json::Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                let shown: String = key.chars().take(64).collect();
                return Err(serde::de::Error::custom(format!("duplicate key \"{shown}\"")));
            }
            let value = map.next_value_seed(Strict)?;
            out.insert(key, value);
        }
        Ok(serde_json::Value::Object(out))
    }
}

/// Converts a value to the request type, naming the exact field path of any error.
pub(crate) fn typed<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = (path != ".").then_some(path);
        // serde's message names the expected type or the unknown field, never our internals.
        let message = match &field {
            Some(f) => format!("invalid value at {f}: {}", strip_position(&inner.to_string())),
            None => format!("invalid value: {}", strip_position(&inner.to_string())),
        };
        ApiError::bad_request(field, message)
    })
}

/// Exists for the `json_body` fuzz target (fuzz/): a request body as `ApiJson` reads it.
#[doc(hidden)]
pub fn fuzz_parse_body(bytes: &[u8]) -> Option<serde_json::Value> {
    // Nesting limit 32 (the default `max_json_depth`), duplicate-key refusal, the SQL
    // injection scan, then typed parsing as document and patch bodies. Document `data`
    // is validated only inside `Core`, against a stored collection: not reached here.
    let value = match parse_value(bytes, 32) {
        Ok(v) => v,
        Err(e) => {
            let _ = e.to_string();
            return None;
        }
    };
    let _ = crate::sqli::check_json(&value);
    let _ = typed::<crate::handlers::documents::DocumentBody>(value.clone()).map_err(|e| e.to_string());
    let _ = typed::<crate::handlers::documents::PatchBody>(value.clone()).map_err(|e| e.to_string());
    Some(value)
}

#[cfg(test)]
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8], max_depth: usize) -> Result<T, ApiError> {
    typed(parse_value(bytes, max_depth)?)
}

fn strip_position(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        if !is_json(&req) {
            // No body at all (and no content type) reads as `{}`: endpoints whose fields
            // are all optional accept it, the others name the missing field.
            let empty = req.headers().get(header::CONTENT_TYPE).is_none()
                && http_body::Body::size_hint(req.body()).exact() == Some(0);
            if !empty {
                return Err(ApiError::UnsupportedMediaType);
            }
            return typed(serde_json::Value::Object(serde_json::Map::new())).map(ApiJson);
        }
        let ctx = req.extensions().get::<crate::context::RequestContext>().cloned();
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            use std::error::Error as _;
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else if r.source().is_some_and(crate::slow_body::is_too_slow) {
                ApiError::Timeout
            } else {
                ApiError::bad_request(None, "could not read request body")
            }
        })?;
        let value = parse_value(&bytes, state.settings.max_json_depth)?;
        // Every body is an object: serde would read a struct from an array by position.
        if !value.is_object() {
            return Err(ApiError::bad_request(None, "expected a JSON object"));
        }
        if let (Some((location, fp)), Some(ctx)) = (crate::sqli::check_json(&value), ctx) {
            state.core.detection().on_sqli(
                &ctx.meta(),
                ctx.user.get().map(String::as_str),
                ctx.self_produced(),
                &location,
                &fp,
            );
        }
        typed(value).map(ApiJson)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the json_body fuzzer: a number re-encoded and read back came back one ULP off
    /// (serde_json without float_roundtrip), so a stored document could change.
    #[test]
    fn numbers_read_back_exactly_after_re_encoding() {
        let first = parse_value(b" -922336666666666854775618", 32).unwrap();
        let again = parse_value(&serde_json::to_vec(&first).unwrap(), 32).unwrap();
        assert_eq!(first, again);
    }

    #[test]
    fn duplicate_keys_are_refused_naming_the_key() {
        let err = parse_value(br#"{"user": {"role": "viewer", "role": "admin"}}"#, 32).unwrap_err();
        assert!(err.to_string().contains("duplicate key \"role\""), "{err}");
        let ok = parse_value(br#"{"a": [1, 2.5, "x", null, true, {"b": {}}], "c": -3}"#, 32).unwrap();
        assert_eq!(ok, serde_json::json!({"a": [1, 2.5, "x", null, true, {"b": {}}], "c": -3}));
        assert!(parse_value(b"{} trailing", 32).is_err());
    }

    #[test]
    fn nesting_is_measured_outside_strings_only() {
        let deep = format!("{}{}", "[".repeat(33), "]".repeat(33));
        assert!(nesting_exceeds(deep.as_bytes(), 32));
        let ok = format!("{}{}", "[".repeat(32), "]".repeat(32));
        assert!(!nesting_exceeds(ok.as_bytes(), 32));
        let in_string = format!("{{\"a\": \"{}\"}}", "[".repeat(100));
        assert!(!nesting_exceeds(in_string.as_bytes(), 32));
        assert!(!nesting_exceeds(br#"{"a": "\"[[[[" }"#, 2));
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        name: String,
        inner: Inner,
    }
    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        n: u32,
    }

    #[test]
    fn errors_name_the_field_path() {
        let err = parse_json::<T>(br#"{"name": "x", "inner": {"n": "nope"}}"#, 32).expect_err("type");
        assert!(matches!(&err, ApiError::BadRequest { field: Some(f), .. } if f == "inner.n"), "{err:?}");
        let err = parse_json::<T>(br#"{"name": "x", "inner": {"n": 1}, "extra": 1}"#, 32).expect_err("unknown");
        assert!(err.to_string().contains("extra"), "{err}");
        let err = parse_json::<T>(br#"{"name": "#, 32).expect_err("syntax");
        assert!(err.to_string().starts_with("malformed JSON"), "{err}");
    }
}
