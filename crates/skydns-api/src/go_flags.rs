//! Go `flag`-package spelling on top of clap.
//!
//! SkyDNS and Skydock were Go programs: their READMEs write `-domain skydns.local`,
//! `-nameserver=8.8.8.8:53` and `-no-round-robin`. Go accepts one or two dashes
//! for every flag, and `-flag=value`. [`normalize`] rewrites such arguments to
//! clap's `--flag` before parsing, leaving single-letter short flags (`-s`),
//! values, and everything after `--` untouched.

/// Rewrites Go-style single-dash long flags (`-domain`, `-ttl=30`) into `--domain`,
/// `--ttl=30`.
///
/// `known_short` lists the single-character flags that stay short (`-s`, `-h`,
/// `-V`). Arguments that follow a flag as its value are not rewritten even when
/// they start with a dash (a negative number, say), because a value never
/// starts with a letter followed by more letters *and* names a flag: the rule
/// is simply "a dash, then a letter, then at least one more name character".
pub fn normalize<I, S>(args: I, known_short: &[char]) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut out = Vec::new();
    let mut passthrough = false;
    for (i, arg) in args.into_iter().map(Into::into).enumerate() {
        if i == 0 || passthrough {
            out.push(arg);
            continue;
        }
        if arg == "--" {
            passthrough = true;
            out.push(arg);
            continue;
        }
        out.push(rewrite_one(arg, known_short));
    }
    out
}

fn rewrite_one(arg: String, known_short: &[char]) -> String {
    let Some(rest) = arg.strip_prefix('-') else {
        return arg;
    };
    if rest.starts_with('-') {
        return arg;
    }
    let name = rest.split('=').next().unwrap_or_default();
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return arg;
    };
    if !first.is_ascii_alphabetic() {
        return arg; // `-1`, `-` (stdin) and friends are values
    }
    let is_long_name = name.len() > 1
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let is_short = name.len() == 1 && known_short.contains(&first);
    if is_long_name || (name.len() == 1 && !is_short) {
        format!("-{arg}")
    } else {
        arg
    }
}

#[cfg(test)]
mod tests {
    use super::normalize;

    fn n(args: &[&str]) -> Vec<String> {
        let mut v = vec!["prog"];
        v.extend_from_slice(args);
        normalize(v, &['s', 'h', 'V'])[1..].to_vec()
    }

    #[test]
    fn single_dash_long_flags_become_double_dash() {
        assert_eq!(
            n(&["-nameserver", "8.8.8.8:53", "-domain", "skydns.local"]),
            ["--nameserver", "8.8.8.8:53", "--domain", "skydns.local"]
        );
        assert_eq!(
            n(&["-ttl=30", "-no-round-robin"]),
            ["--ttl=30", "--no-round-robin"]
        );
    }

    #[test]
    fn short_flags_double_dash_values_and_passthrough_are_kept() {
        assert_eq!(n(&["-s", "/docker.sock"]), ["-s", "/docker.sock"]);
        assert_eq!(
            n(&["--domain", "x", "-1", "-"]),
            ["--domain", "x", "-1", "-"]
        );
        assert_eq!(n(&["--", "-domain"]), ["--", "-domain"]);
    }
}
