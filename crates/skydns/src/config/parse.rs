//! Parsers of flag values that need more than `FromStr`: addresses with a
//! helpful error, upstream lists (or a resolv.conf), client networks.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use super::ConfigError;

/// `IP:port`, for clap (`-dns`, `-http`).
///
/// # Errors
/// A message clap shows after the flag's name.
pub(super) fn socket_addr(value: &str) -> Result<SocketAddr, String> {
    value.parse().map_err(|_| {
        "not an IP:port address (for example 127.0.0.1:5353 or [::1]:5353)".to_string()
    })
}

/// Loopback, RFC 1918, link-local and ULA: hosts and containers on this machine.
pub fn default_allow_recursion() -> Vec<IpNet> {
    [
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
    ]
    .iter()
    .filter_map(|n| n.parse().ok())
    .collect()
}

/// `-allow-recursion`: CIDRs (or bare addresses), comma-separated, repeatable.
///
/// # Errors
/// [`ConfigError`] naming the entry that is not one.
pub(super) fn cidrs(specs: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    specs
        .iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    ConfigError::new(
                        "allow-recursion",
                        format!("-allow-recursion entry {s:?} is not a CIDR like 10.0.0.0/8"),
                    )
                })
        })
        .collect()
}

/// Parses `-nameserver`: a comma-separated list of `IP[:port]` (IPv6 in
/// brackets when a port is given; port 53 by default), or the path of a
/// resolv.conf-style file whose `nameserver` lines are used.
///
/// # Errors
/// [`ConfigError`] naming the entry that is neither, or the unreadable file.
pub fn nameservers(spec: &str) -> Result<Vec<SocketAddr>, ConfigError> {
    let spec = spec.trim();
    let error = |message: String| ConfigError::new("nameserver", message);
    if spec.starts_with('/') || spec.starts_with('.') {
        let text = std::fs::read_to_string(spec)
            .map_err(|e| error(format!("-nameserver {spec}: cannot read file: {e}")))?;
        let found: Vec<SocketAddr> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("nameserver"))
            .filter_map(|rest| rest.split_whitespace().next())
            .filter_map(|ip| ip.split('%').next()?.parse::<IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 53))
            .collect();
        if found.is_empty() {
            return Err(error(format!(
                "-nameserver {spec}: the file lists no nameserver"
            )));
        }
        return Ok(found);
    }
    spec.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<SocketAddr>()
                .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                .map_err(|_| {
                    error(format!(
                        "-nameserver entry {s:?} is not IP[:port] (IPv6 as [::1]:53)"
                    ))
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_parse_lists_ports_and_v6() {
        let got = nameservers("8.8.8.8,[::1]:5353, 127.0.0.1:54").expect("parses");
        let want: Vec<SocketAddr> = vec![
            "8.8.8.8:53".parse().expect("a"),
            "[::1]:5353".parse().expect("b"),
            "127.0.0.1:54".parse().expect("c"),
        ];
        assert_eq!(got, want);
        let e = nameservers("not-an-ip").expect_err("refused");
        assert_eq!(e.flag, "nameserver");
    }

    #[test]
    fn cidrs_take_networks_and_bare_addresses() {
        let got = cidrs(&["10.0.0.0/8, 127.0.0.1".into(), "::1".into()]).expect("parses");
        assert_eq!(got.len(), 3);
        assert_eq!(
            cidrs(&["10.0.0".into()]).expect_err("refused").flag,
            "allow-recursion"
        );
    }
}
