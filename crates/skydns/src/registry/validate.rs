//! Checks a registration before anything is stored, so a rejected request
//! changes nothing and its error names the field to fix.

use std::net::IpAddr;

use skydns_api::Service;

use super::RegistryError;

/// Longest DNS label (RFC 1035).
const MAX_LABEL: usize = 63;
/// Longest DNS name in presentation form without the trailing dot.
const MAX_NAME: usize = 253;

/// Validates a service about to be registered as `uuid` under `domain`.
///
/// # Errors
/// [`RegistryError::Invalid`] naming the first offending field.
pub(crate) fn service(uuid: &str, s: &Service, domain: &str) -> Result<(), RegistryError> {
    label_field("UUID", uuid, true)?;
    label_field("Name", &s.name, false)?;
    label_field("Version", &s.version, false)?;
    label_field("Environment", &s.environment, false)?;
    label_field("Region", &s.region, false)?;
    host(&s.host)?;
    if s.port == 0 {
        return Err(invalid("Port", "Port is required and must be 1-65535"));
    }
    if s.ttl == 0 && !s.no_expire {
        return Err(invalid(
            "TTL",
            "TTL must be at least 1 second (or set NoExpire)",
        ));
    }
    // A host too long for a label cannot be named in a query: its place in
    // the longest name a query can spell is a wildcard's (`*`).
    let host_label = s.host.trim_end_matches('.');
    let host_label = if host_label.len() > MAX_LABEL {
        "*"
    } else {
        host_label
    };
    let full = [
        uuid,
        host_label,
        &s.region,
        &s.version,
        &s.name,
        &s.environment,
        domain,
    ]
    .iter()
    .map(|f| f.len() + 1)
    .sum::<usize>()
        - 1;
    if full > MAX_NAME {
        let longest = [
            ("UUID", uuid),
            ("Host", host_label),
            ("Region", &s.region),
            ("Version", &s.version),
            ("Name", &s.name),
            ("Environment", &s.environment),
        ]
        .into_iter()
        .max_by_key(|(_, v)| v.len())
        .map_or("Name", |(f, _)| f);
        return Err(invalid(
            longest,
            &format!("the service's DNS name would be {full} bytes, over the limit of {MAX_NAME}"),
        ));
    }
    Ok(())
}

/// Validates the fields of a heartbeat.
///
/// # Errors
/// [`RegistryError::Invalid`] for a TTL of 0.
pub(crate) fn heartbeat_ttl(ttl: u32) -> Result<(), RegistryError> {
    if ttl == 0 {
        return Err(invalid("TTL", "TTL must be at least 1 second"));
    }
    Ok(())
}

/// Validates a callback's reply address.
///
/// # Errors
/// [`RegistryError::Invalid`] for a missing Reply or Port.
pub(crate) fn callback(uuid: &str, reply: &str, port: u16) -> Result<(), RegistryError> {
    label_field("UUID", uuid, true)?;
    if reply.is_empty() {
        return Err(invalid(
            "Reply",
            "Reply (the host to call back) is required",
        ));
    }
    if reply.parse::<IpAddr>().is_err() && !is_hostname(reply) {
        return Err(invalid(
            "Reply",
            "Reply must be an IP address or a hostname",
        ));
    }
    if port == 0 {
        return Err(invalid("Port", "Port is required and must be 1-65535"));
    }
    Ok(())
}

fn label_field(field: &'static str, value: &str, required: bool) -> Result<(), RegistryError> {
    if value.is_empty() {
        return if required {
            Err(invalid(field, &format!("{field} is required")))
        } else {
            Ok(())
        };
    }
    // Checked on the field itself, without building its label: `to_label`
    // keeps the length, lowercases ASCII and turns `.` and `:` into `-`.
    if value.len() > MAX_LABEL {
        return Err(invalid(
            field,
            &format!(
                "{field} is {} bytes; a DNS label holds at most {MAX_LABEL}",
                value.len()
            ),
        ));
    }
    if value == "*" || value.eq_ignore_ascii_case("any") {
        return Err(invalid(
            field,
            &format!("{field} {value:?} is reserved as a wildcard in queries"),
        ));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        return Err(invalid(
            field,
            &format!(
                "{field} {value:?} is not a valid DNS label: use letters, digits, '-', '_' (and '.' in Version)"
            ),
        ));
    }
    if field != "Version" && value.contains('.') {
        return Err(invalid(
            field,
            &format!("{field} {value:?} must be a single DNS label (no dots)"),
        ));
    }
    Ok(())
}

fn host(value: &str) -> Result<(), RegistryError> {
    if value.is_empty() {
        return Err(invalid(
            "Host",
            "Host is required (an IP address or a hostname)",
        ));
    }
    if value.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    if !is_hostname(value) {
        return Err(invalid(
            "Host",
            &format!("Host {value:?} is neither an IP address nor a valid hostname"),
        ));
    }
    // A hostname longer than a label (up to 253 bytes, as SkyDNS v1
    // accepted) is kept: SRV answers carry it whole as their target; only
    // a query naming the host label cannot select it (a query label holds
    // at most 63 bytes), every other query does.
    Ok(())
}

fn is_hostname(value: &str) -> bool {
    let v = value.strip_suffix('.').unwrap_or(value);
    !v.is_empty()
        && v.len() <= MAX_NAME
        && v.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= MAX_LABEL
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn invalid(field: &'static str, message: &str) -> RegistryError {
    RegistryError::Invalid {
        field,
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> Service {
        Service {
            name: "TestService".into(),
            version: "1.0.0".into(),
            environment: "Production".into(),
            region: "Test".into(),
            host: "web1.site.com".into(),
            port: 9000,
            ttl: 10,
            ..Default::default()
        }
    }

    fn field_of(r: Result<(), RegistryError>) -> &'static str {
        match r {
            Err(RegistryError::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn accepts_the_skydns_readme_example() {
        service("1001", &ok(), "skydns.local").expect("valid");
        service(
            "1001",
            &Service {
                host: "::1".into(),
                ..ok()
            },
            "skydns.local",
        )
        .expect("v6");
    }

    #[test]
    fn names_the_offending_field() {
        assert_eq!(
            field_of(service(
                "1001",
                &Service {
                    host: String::new(),
                    ..ok()
                },
                "d"
            )),
            "Host"
        );
        assert_eq!(
            field_of(service("1001", &Service { port: 0, ..ok() }, "d")),
            "Port"
        );
        assert_eq!(
            field_of(service("1001", &Service { ttl: 0, ..ok() }, "d")),
            "TTL"
        );
        assert_eq!(
            field_of(service(
                "1001",
                &Service {
                    name: "a b".into(),
                    ..ok()
                },
                "d"
            )),
            "Name"
        );
        assert_eq!(
            field_of(service(
                "1001",
                &Service {
                    region: "x".repeat(64),
                    ..ok()
                },
                "d"
            )),
            "Region"
        );
        assert_eq!(
            field_of(service(
                "1001",
                &Service {
                    environment: "*".into(),
                    ..ok()
                },
                "d"
            )),
            "Environment"
        );
        assert_eq!(field_of(service("a.b", &ok(), "d")), "UUID");
        assert_eq!(
            field_of(service(
                "1001",
                &Service {
                    host: "bad host".into(),
                    ..ok()
                },
                "d"
            )),
            "Host"
        );
        let long = "x".repeat(60);
        let s = Service {
            name: long.clone(),
            environment: long.clone(),
            region: long.clone(),
            version: long,
            ..ok()
        };
        assert!(matches!(
            service("1001", &s, "skydns.local"),
            Err(RegistryError::Invalid { .. })
        ));
        // A host longer than a label is accepted up to a name's 253 bytes.
        let long_host = format!("ip-10-0-0-1.{}.eu-west-1.compute.internal", "h".repeat(60));
        service(
            "1001",
            &Service {
                host: long_host,
                ..ok()
            },
            "skydns.local",
        )
        .expect("a 100-byte hostname is a valid Host");
        let too_long = format!("{}.example", vec!["x".repeat(62); 4].join("."));
        assert_eq!(
            field_of(service(
                "1001",
                &Service {
                    host: too_long,
                    ..ok()
                },
                "d"
            )),
            "Host"
        );
        service(
            "1",
            &Service {
                ttl: 0,
                no_expire: true,
                ..ok()
            },
            "d",
        )
        .expect("NoExpire allows TTL 0");
    }
}
