//! Decoding request bodies with errors that name the field at fault.
//!
//! Bodies are read as JSON values first and every known field is type-checked
//! by hand, because serde's own messages ("invalid type: string, expected
//! u16 at line 1 column 40") do not say which field to fix.

use serde_json::{Map, Value};
use skydns_api::{Callback, Heartbeat, Service};

use super::error::ApiError;

const STRING_FIELDS: &[&str] = &[
    "UUID",
    "Name",
    "Version",
    "Environment",
    "Region",
    "Host",
    "Reply",
];

fn object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "request body is empty: a JSON object is required",
        ));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request("request body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("malformed JSON: {e}"))),
    }
}

fn check_types(map: &Map<String, Value>) -> Result<(), ApiError> {
    for (key, value) in map {
        let k = key.as_str();
        if STRING_FIELDS.contains(&k) && !value.is_string() && !value.is_null() {
            return Err(ApiError::bad_field(k, format!("{k} must be a string")));
        }
        match k {
            "Port" if !value.as_u64().is_some_and(|p| (1..=65535).contains(&p)) => {
                return Err(ApiError::bad_field(
                    "Port",
                    "Port must be an integer from 1 to 65535",
                ));
            }
            "TTL" if value.as_u64().is_none_or(|t| t > u64::from(u32::MAX)) => {
                return Err(ApiError::bad_field(
                    "TTL",
                    "TTL must be a whole number of seconds",
                ));
            }
            "NoExpire" if !value.is_boolean() => {
                return Err(ApiError::bad_field(
                    "NoExpire",
                    "NoExpire must be true or false",
                ));
            }
            "Owner" if !value.is_string() && !value.is_null() => {
                return Err(ApiError::bad_field("Owner", "Owner must be a string"));
            }
            _ => {}
        }
    }
    Ok(())
}

fn decode<T: serde::de::DeserializeOwned>(map: Map<String, Value>) -> Result<T, ApiError> {
    // Nulls mean "absent", as Go's encoding/json treats them.
    let map: Map<String, Value> = map.into_iter().filter(|(_, v)| !v.is_null()).collect();
    serde_json::from_value(Value::Object(map))
        .map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))
}

/// A service registration body.
///
/// # Errors
/// 400 for malformed JSON or a field of the wrong type.
pub(super) fn service(bytes: &[u8]) -> Result<Service, ApiError> {
    let map = object(bytes)?;
    check_types(&map)?;
    if !map.contains_key("Host") {
        return Err(ApiError::bad_field(
            "Host",
            "Host is required (an IP address or a hostname)",
        ));
    }
    if !map.contains_key("Port") {
        return Err(ApiError::bad_field(
            "Port",
            "Port is required and must be 1-65535",
        ));
    }
    decode(map)
}

/// A heartbeat body (`{"TTL": n}`).
///
/// # Errors
/// 400 for malformed JSON or a missing or invalid TTL.
pub(super) fn heartbeat(bytes: &[u8]) -> Result<Heartbeat, ApiError> {
    let map = object(bytes)?;
    check_types(&map)?;
    if !map.contains_key("TTL") {
        return Err(ApiError::bad_field("TTL", "TTL is required"));
    }
    decode(map)
}

/// A callback body.
///
/// # Errors
/// 400 for malformed JSON or a field of the wrong type.
pub(super) fn callback(bytes: &[u8]) -> Result<Callback, ApiError> {
    let map = object(bytes)?;
    check_types(&map)?;
    decode(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(r: Result<Service, ApiError>) -> Option<String> {
        let resp = axum::response::IntoResponse::into_response(r.expect_err("must fail"));
        Some(resp.status().to_string())
    }

    #[test]
    fn v1_body_decodes() {
        let s = service(br#"{"Name":"a","Host":"10.0.0.1","Port":80,"TTL":10,"Extra":true}"#)
            .expect("ok");
        assert_eq!(s.port, 80);
    }

    #[test]
    fn bad_bodies_are_400() {
        for body in [
            &b"{"[..],
            b"[]",
            b"",
            br#"{"Host":"h","Port":70000}"#,
            br#"{"Host":"h","Port":"80"}"#,
            br#"{"Host":"h","Port":80,"TTL":-1}"#,
            br#"{"Host":1,"Port":80}"#,
            br#"{"Port":80}"#,
        ] {
            assert_eq!(
                field(service(body)).as_deref(),
                Some("400 Bad Request"),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
