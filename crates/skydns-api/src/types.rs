//! Wire types of the registry API, spelled as SkyDNS v1 spells them.
//!
//! Unknown JSON fields are ignored on input (as Go's `encoding/json` does), so
//! SkyDNS v1 clients and newer ones can talk to the same server.

use serde::{Deserialize, Serialize};

/// A service registration: the body of `PUT /skydns/services/{uuid}` and the
/// answer of `GET`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Service {
    /// The registration's id; taken from the URL on `PUT`.
    #[serde(rename = "UUID", skip_serializing_if = "String::is_empty")]
    pub uuid: String,
    /// Service name (`redis`, `cool-api`): the `<service>` label.
    #[serde(rename = "Name")]
    pub name: String,
    /// Version (`1.0.0`); dots become hyphens in DNS (`1-0-0`).
    #[serde(rename = "Version")]
    pub version: String,
    /// Environment (`production`, `dev`): the right-most label under the domain.
    #[serde(rename = "Environment")]
    pub environment: String,
    /// Region (`east`); SRV answers prefer the region asked for.
    #[serde(rename = "Region")]
    pub region: String,
    /// An IPv4/IPv6 address (answered as A/AAAA) or a hostname (an SRV target).
    #[serde(rename = "Host")]
    pub host: String,
    /// The service's port, 1–65535.
    #[serde(rename = "Port")]
    pub port: u16,
    /// Seconds the registration lives without a heartbeat. In answers from the
    /// server it is the remaining time.
    #[serde(rename = "TTL")]
    pub ttl: u32,
    /// When the registration expires (RFC 3339, UTC); set by the server.
    #[serde(rename = "Expires", skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// A registration that never expires (SkyDNS v1 field).
    #[serde(rename = "NoExpire", skip_serializing_if = "std::ops::Not::not")]
    pub no_expire: bool,
    /// Which agent made this registration (for example `skydock@host1`), so an
    /// agent only ever removes its own. SkyDNS v1 clients ignore it.
    #[serde(rename = "Owner", skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// A heartbeat: the body of `PATCH /skydns/services/{uuid}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Heartbeat {
    /// New time to live in seconds, counted from now.
    #[serde(rename = "TTL")]
    pub ttl: u32,
    /// The agent sending it. When given, it must be the service's `Owner`
    /// (else 409); SkyDNS v1 clients leave it out and are not checked.
    #[serde(rename = "Owner", default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// A callback registration: the body of `PUT /skydns/callbacks/{uuid}`.
///
/// It attaches to every service whose `Name`, `Version`, `Environment` and
/// `Region` match (empty fields match anything). When such a service is removed
/// the server sends `DELETE http://{Reply}:{Port}/skydns/callbacks/{uuid}` with
/// the service's JSON as body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Callback {
    /// The callback's id; taken from the URL on `PUT`.
    #[serde(rename = "UUID", skip_serializing_if = "String::is_empty")]
    pub uuid: String,
    /// Service name to match.
    #[serde(rename = "Name")]
    pub name: String,
    /// Version to match.
    #[serde(rename = "Version")]
    pub version: String,
    /// Environment to match.
    #[serde(rename = "Environment")]
    pub environment: String,
    /// Region to match.
    #[serde(rename = "Region")]
    pub region: String,
    /// Host to match (optional).
    #[serde(rename = "Host", skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// Host (name or IP) that receives the callback.
    #[serde(rename = "Reply")]
    pub reply: String,
    /// Port on `Reply` that receives the callback.
    #[serde(rename = "Port")]
    pub port: u16,
}

/// The JSON body of every error answer: `{"error": "...", "field": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiError {
    /// Human-readable reason.
    pub error: String,
    /// The offending JSON field or parameter, when one is to blame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_uses_skydns_v1_field_names() {
        let json = r#"{"Name":"TestService","Version":"1.0.0","Environment":"Production",
            "Region":"Test","Host":"web1.site.com","Port":9000,"TTL":10,"Unknown":1}"#;
        let s: Service = serde_json::from_str(json).expect("v1 body parses");
        assert_eq!(s.name, "TestService");
        assert_eq!(s.port, 9000);
        assert_eq!(s.ttl, 10);
        assert!(!s.no_expire);
        let back = serde_json::to_value(&s).expect("serializes");
        assert_eq!(back["Host"], "web1.site.com");
        assert!(back.get("Owner").is_none());
        assert!(back.get("NoExpire").is_none());
    }

    #[test]
    fn callback_round_trips() {
        let cb = Callback {
            reply: "127.0.0.1".into(),
            port: 5441,
            name: "a".into(),
            ..Default::default()
        };
        let v = serde_json::to_value(&cb).expect("serializes");
        assert_eq!(v["Reply"], "127.0.0.1");
        let back: Callback = serde_json::from_value(v).expect("parses");
        assert_eq!(back, cb);
    }
}
