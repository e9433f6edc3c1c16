//! Human output: tables, one service, counts, TTLs.

use std::collections::BTreeMap;

use skydns_api::Service;

use crate::*;

/// A duration in seconds as `1h6m27s` (`0s` for zero).
pub fn format_ttl(secs: u32) -> String {
    if secs == 0 {
        return "0s".to_string();
    }
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    let mut out = String::new();
    for (n, unit) in [(d, "d"), (h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
}

/// The "TTL left" of a service as the server answered it.
pub(crate) fn ttl_left(s: &Service) -> String {
    if s.no_expire {
        "never".to_string()
    } else {
        format_ttl(s.ttl)
    }
}

pub(crate) fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// Left-aligned columns separated by two spaces, without trailing blanks.
pub(crate) fn render_rows(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|v| v.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let w = widths.get(i).copied().unwrap_or(0);
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The `list` table: uuid, name, version, environment, region, host:port,
/// TTL left and owner, one service per line, in the server's order.
pub fn format_table(services: &[Service]) -> String {
    let mut rows = vec![
        [
            "UUID",
            "NAME",
            "VERSION",
            "ENVIRONMENT",
            "REGION",
            "HOST:PORT",
            "TTL",
            "OWNER",
        ]
        .map(String::from)
        .to_vec(),
    ];
    rows.extend(services.iter().map(|s| {
        vec![
            or_dash(&s.uuid).to_string(),
            or_dash(&s.name).to_string(),
            or_dash(&s.version).to_string(),
            or_dash(&s.environment).to_string(),
            or_dash(&s.region).to_string(),
            host_port(&s.host, s.port),
            ttl_left(s),
            or_dash(s.owner.as_deref().unwrap_or_default()).to_string(),
        ]
    }));
    render_rows(&rows)
}

/// One service, a field per line (`get`).
pub fn format_service(s: &Service) -> String {
    let expires = if s.no_expire {
        "never (NoExpire)".to_string()
    } else {
        s.expires.clone().unwrap_or_else(|| "-".to_string())
    };
    let rows: Vec<Vec<String>> = [
        ("UUID", or_dash(&s.uuid).to_string()),
        ("Name", or_dash(&s.name).to_string()),
        ("Version", or_dash(&s.version).to_string()),
        ("Environment", or_dash(&s.environment).to_string()),
        ("Region", or_dash(&s.region).to_string()),
        ("Host", or_dash(&s.host).to_string()),
        ("Port", s.port.to_string()),
        ("TTL left", ttl_left(s)),
        ("Expires", expires),
        (
            "Owner",
            or_dash(s.owner.as_deref().unwrap_or_default()).to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| vec![format!("{k}:"), v])
    .collect();
    render_rows(&rows)
}

/// `regions` / `environments`: a name and a count per line, under `heading`.
pub fn format_counts(heading: &str, counts: &BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "no services registered\n".to_string();
    }
    let mut rows = vec![vec![heading.to_string(), "SERVICES".to_string()]];
    rows.extend(counts.iter().map(|(k, n)| {
        vec![
            if k.is_empty() {
                "(none)".to_string()
            } else {
                k.clone()
            },
            n.to_string(),
        ]
    }));
    render_rows(&rows)
}
