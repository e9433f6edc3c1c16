//! How `skydock rollout` starts a new replica like an old one: from the old
//! container's `docker inspect` (its `Config` and `HostConfig`), with the new
//! image.
//!
//! Copied as they are: the whole `HostConfig` — volumes and mounts (`Binds`,
//! `Mounts`, `VolumesFrom`, `Tmpfs`), published ports, resource limits
//! (memory, CPU, pids, ulimits, devices), restart policy, capabilities,
//! security options, DNS settings, log driver, init — and the run-time
//! settings of `Config`: tty and stdin, stop signal and timeout.
//!
//! What `docker inspect` merges in from the *old image* is not copied, so that
//! the new image's own defaults apply: an `ENV`, `LABEL`, `EXPOSE` or
//! `VOLUME` entry equal to the old image's, and `Cmd`, `Entrypoint`,
//! `Healthcheck`, `User`, `WorkingDir`, `StopSignal` and `Shell` when they
//! equal the old image's (a value given at `docker run` differs, and is
//! kept). Docker's rules for `--entrypoint` hold: a changed entrypoint is
//! copied with the container's command, and the new image's `CMD` is not
//! used.
//!
//! Not copied: the name (a new one), the hostname when it is Docker's default
//! (the id's first 12 characters), `--cidfile`, compose's labels, static IP
//! addresses and network aliases. A fixed published host port (`-p 8080:80`)
//! cannot be held by the old and the new replica at once: the rollout refuses
//! it before starting anything.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, ContainerInspectResponse, HostConfig, ImageConfig};

/// The label marking the containers a rollout started (value: the image).
pub(crate) const ROLLOUT_LABEL: &str = "skydock.rollout";

/// The networks of `template`, sorted by name: the first is the new
/// replica's network mode, the others are connected after create.
pub(crate) fn networks(template: &ContainerInspectResponse) -> Vec<String> {
    let mut v: Vec<String> = template
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .map(|n| n.keys().cloned().collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// The create request for a replica of `template` from `image`;
/// `old_image` is the config of the image `template` runs (`None` when it
/// cannot be inspected: everything is then copied).
///
/// # Errors
/// A description of a setting that cannot be copied (a fixed host port).
pub(crate) fn create_body(
    template: &ContainerInspectResponse,
    old_image: Option<&ImageConfig>,
    image: &str,
) -> Result<ContainerCreateBody, String> {
    let config = template.config.clone().unwrap_or_default();
    let img = old_image.cloned().unwrap_or_default();
    let id = template.id.as_deref().unwrap_or_default();

    let (entrypoint, cmd) = if nonempty(&config.entrypoint) != nonempty(&img.entrypoint) {
        // `--entrypoint` (an empty one resets the image's): Docker then uses
        // no image CMD, so the container's command goes with it.
        let entrypoint = config.entrypoint.clone().unwrap_or_default();
        let entrypoint = if entrypoint.is_empty() {
            vec![String::new()]
        } else {
            entrypoint
        };
        (Some(entrypoint), config.cmd.clone())
    } else if nonempty(&config.cmd) != nonempty(&img.cmd) {
        (None, config.cmd.clone())
    } else {
        (None, None)
    };
    let labels: HashMap<String, String> = config
        .labels
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, v)| img.labels.as_ref().and_then(|l| l.get(k)) != Some(v))
        .filter(|(k, _)| !k.starts_with("com.docker.compose."))
        .chain([(ROLLOUT_LABEL.to_string(), image.to_string())])
        .collect();
    let hostname = config
        .hostname
        .filter(|h| !h.is_empty() && !id.starts_with(h.as_str()));

    let mut host = template.host_config.clone().unwrap_or_default();
    refuse_fixed_host_ports(&host)?;
    host.container_id_file = None;
    host.links = host.links.map(|l| l.iter().map(|s| link(s)).collect());
    if let Some(first) = networks(template).into_iter().next() {
        // `container:<id>` shares another container's network: keep it.
        if !host
            .network_mode
            .as_deref()
            .is_some_and(|m| m.starts_with("container:"))
        {
            host.network_mode = Some(first);
        }
    }

    Ok(ContainerCreateBody {
        image: Some(image.to_string()),
        hostname,
        domainname: config.domainname.filter(|d| !d.is_empty()),
        user: unless_same(config.user, img.user),
        attach_stdin: config.attach_stdin,
        attach_stdout: config.attach_stdout,
        attach_stderr: config.attach_stderr,
        tty: config.tty,
        open_stdin: config.open_stdin,
        stdin_once: config.stdin_once,
        exposed_ports: not_in(config.exposed_ports, img.exposed_ports.as_ref()),
        env: not_in(config.env, img.env.as_ref()),
        cmd,
        entrypoint,
        healthcheck: if config.healthcheck == img.healthcheck {
            None
        } else {
            config.healthcheck
        },
        volumes: not_in(config.volumes, img.volumes.as_ref()),
        working_dir: unless_same(config.working_dir, img.working_dir),
        network_disabled: config.network_disabled,
        labels: Some(labels),
        // compose's stop_grace_period lands in StopTimeout: the drain
        // condition depends on it.
        stop_signal: unless_same(config.stop_signal, img.stop_signal),
        stop_timeout: config.stop_timeout,
        shell: if nonempty(&config.shell) == nonempty(&img.shell) {
            None
        } else {
            config.shell
        },
        host_config: Some(host),
        ..ContainerCreateBody::default()
    })
}

fn nonempty(v: &Option<Vec<String>>) -> Option<&Vec<String>> {
    v.as_ref().filter(|v| !v.is_empty())
}

/// `value` unless it is empty or the old image's.
fn unless_same(value: Option<String>, image: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty() && Some(v) != image.as_ref())
}

/// The entries of `values` that the old image did not bring; `None` when
/// none are left, so the new image's apply alone.
fn not_in(values: Option<Vec<String>>, image: Option<&Vec<String>>) -> Option<Vec<String>> {
    let kept: Vec<String> = values
        .unwrap_or_default()
        .into_iter()
        .filter(|v| !image.is_some_and(|i| i.contains(v)))
        .collect();
    (!kept.is_empty()).then_some(kept)
}

/// `docker inspect` shows a link as `/db:/app-1/db`; create takes `db:db`.
fn link(s: &str) -> String {
    match s.split_once(':') {
        Some((source, alias)) => {
            let alias = alias.rsplit('/').next().unwrap_or(alias);
            format!("{}:{alias}", source.trim_start_matches('/'))
        }
        None => s.trim_start_matches('/').to_string(),
    }
}

fn refuse_fixed_host_ports(host: &HostConfig) -> Result<(), String> {
    let mut fixed: Vec<String> = host
        .port_bindings
        .iter()
        .flatten()
        .flat_map(|(port, bindings)| {
            bindings.iter().flatten().filter_map(move |b| {
                let hp = b.host_port.as_deref().unwrap_or_default();
                (!hp.is_empty() && hp != "0").then(|| format!("{hp}->{port}"))
            })
        })
        .collect();
    if fixed.is_empty() {
        return Ok(());
    }
    fixed.sort();
    Err(format!(
        "the old container publishes fixed host port(s) {}: an old and a new replica cannot hold one \
         at once; publish the container port alone (`-p 127.0.0.1::8080`, an ephemeral host port \
         that skydock registers) to roll it out",
        fixed.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerConfig, HealthConfig, PortBinding};

    fn image_config() -> ImageConfig {
        ImageConfig {
            env: Some(vec!["PATH=/bin".into(), "VERSION=1".into()]),
            cmd: Some(vec!["/bin/httpd".into(), "-f".into()]),
            exposed_ports: Some(vec!["8080/tcp".into()]),
            labels: Some(HashMap::from([("from-image".into(), "1".into())])),
            ..ImageConfig::default()
        }
    }

    fn template(config: ContainerConfig, host: HostConfig) -> ContainerInspectResponse {
        ContainerInspectResponse {
            id: Some("0123456789abcdef".into()),
            config: Some(config),
            host_config: Some(host),
            ..ContainerInspectResponse::default()
        }
    }

    fn image_defaults() -> ContainerConfig {
        ContainerConfig {
            hostname: Some("0123456789ab".into()),
            env: Some(vec!["PATH=/bin".into(), "VERSION=1".into()]),
            cmd: Some(vec!["/bin/httpd".into(), "-f".into()]),
            exposed_ports: Some(vec!["8080/tcp".into()]),
            labels: Some(HashMap::from([
                ("from-image".into(), "1".into()),
                ("com.docker.compose.service".into(), "web".into()),
            ])),
            ..ContainerConfig::default()
        }
    }

    #[test]
    fn what_the_old_image_brought_is_left_to_the_new_one() {
        let t = template(image_defaults(), HostConfig::default());
        let b = create_body(&t, Some(&image_config()), "app:v2").expect("body");
        assert_eq!(b.image.as_deref(), Some("app:v2"));
        assert_eq!((b.cmd, b.entrypoint, b.env), (None, None, None));
        assert_eq!((b.exposed_ports, b.hostname), (None, None));
        assert_eq!(
            b.labels,
            Some(HashMap::from([(ROLLOUT_LABEL.into(), "app:v2".into())]))
        );
    }

    #[test]
    fn run_time_settings_are_copied() {
        let mut c = image_defaults();
        c.cmd = Some(vec![
            "/bin/httpd".into(),
            "-f".into(),
            "-p".into(),
            "9000".into(),
        ]);
        c.env
            .get_or_insert_with(Vec::new)
            .extend(["VERSION=override".into(), "DNS_SERVICE=web".into()]);
        c.env
            .get_or_insert_with(Vec::new)
            .retain(|e| e != "VERSION=1");
        c.healthcheck = Some(HealthConfig {
            test: Some(vec!["CMD".into(), "true".into()]),
            ..HealthConfig::default()
        });
        c.hostname = Some("web-1".into());
        let host = HostConfig {
            binds: Some(vec!["data:/data".into()]),
            memory: Some(64 << 20),
            nano_cpus: Some(500_000_000),
            container_id_file: Some("/tmp/cid".into()),
            links: Some(vec!["/db:/web-1/db".into()]),
            port_bindings: Some(HashMap::from([(
                "8080/tcp".into(),
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(String::new()),
                }]),
            )])),
            ..HostConfig::default()
        };
        let t = template(c, host.clone());
        let b = create_body(&t, Some(&image_config()), "app:v2").expect("body");
        assert_eq!(b.cmd.as_deref().map(<[String]>::len), Some(4));
        assert_eq!(b.entrypoint, None);
        let mut env = b.env.expect("env");
        env.sort();
        assert_eq!(env, ["DNS_SERVICE=web", "VERSION=override"]);
        assert!(b.healthcheck.is_some());
        assert_eq!(b.hostname.as_deref(), Some("web-1"));
        let h = b.host_config.expect("host config");
        assert_eq!(h.binds, host.binds);
        assert_eq!((h.memory, h.nano_cpus), (host.memory, host.nano_cpus));
        assert_eq!(h.port_bindings, host.port_bindings);
        assert_eq!(h.container_id_file, None);
        assert_eq!(h.links, Some(vec!["db:db".into()]));
    }

    #[test]
    fn a_changed_entrypoint_takes_the_containers_command_with_it() {
        let mut c = image_defaults();
        c.entrypoint = Some(vec!["/bin/sh".into(), "-c".into()]);
        c.cmd = None;
        let b = create_body(
            &template(c, HostConfig::default()),
            Some(&image_config()),
            "x",
        )
        .expect("body");
        assert_eq!(b.entrypoint, Some(vec!["/bin/sh".into(), "-c".into()]));
        assert_eq!(b.cmd, None);
    }

    #[test]
    fn a_fixed_host_port_is_refused_with_the_reason() {
        let host = HostConfig {
            port_bindings: Some(HashMap::from([(
                "80/tcp".into(),
                Some(vec![PortBinding {
                    host_ip: None,
                    host_port: Some("8080".into()),
                }]),
            )])),
            ..HostConfig::default()
        };
        let e = create_body(&template(image_defaults(), host), None, "x").expect_err("refused");
        assert!(e.contains("8080->80/tcp"), "{e}");
    }

    #[test]
    fn without_the_old_image_everything_is_copied() {
        let b = create_body(
            &template(image_defaults(), HostConfig::default()),
            None,
            "x",
        )
        .expect("body");
        assert_eq!(b.cmd, Some(vec!["/bin/httpd".into(), "-f".into()]));
        assert_eq!(b.env.map(|e| e.len()), Some(2));
    }
}
