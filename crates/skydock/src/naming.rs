//! Pure mapping from a container to the services it is registered as.
//!
//! The original Skydock's defaults, plus the per-container overrides users of
//! Skydock and Registrator rely on:
//! - Service = image name without registry, repository and tag; Instance
//!   (SkyDNS `Version`) = container name without the slash; Environment,
//!   Region and TTL from the agent's flags; Host = the container's IP.
//! - Labels or env (labels win): `DNS_SERVICE`, `DNS_INSTANCE`,
//!   `DNS_ENVIRONMENT`, `DNS_TTL`, `SERVICE_NAME`, `SERVICE_<port>_NAME`,
//!   `SERVICE_IGNORE`.
//! - One registration per port: published host ports, else exposed ports,
//!   else 80. UUID = the first 10 characters of the container id for the
//!   lowest port (the original's one registration, so scripts that
//!   `GET /skydns/services/<id10>` keep working), `<id10>-<port>` for each
//!   other port.

use std::collections::{BTreeSet, HashMap};

use skydns_api::Service;

/// What the agent knows about a container, independent of the Docker API types.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerInfo {
    /// Full container id.
    pub id: String,
    /// Name as Docker reports it (`/redis1`).
    pub name: String,
    /// Image as the container was started from (`crosbymichael/redis:latest`).
    pub image: String,
    /// `KEY=value` environment.
    pub env: Vec<String>,
    /// Labels.
    pub labels: HashMap<String, String>,
    /// Exposed container ports (TCP and UDP numbers).
    pub exposed: BTreeSet<u16>,
    /// Published ports: container port → host ports.
    pub published: Vec<(u16, u16)>,
    /// (network name, IP) of each network with an address, sorted by name.
    pub networks: Vec<(String, String)>,
    /// `host` for `--net=host`.
    pub network_mode: String,
    /// Running and not paused.
    pub running: bool,
    /// Paused.
    pub paused: bool,
    /// Health: `None` without a HEALTHCHECK, else whether it is healthy now.
    pub healthy: Option<bool>,
}

/// The agent's defaults for every container.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// `-environment`.
    pub environment: String,
    /// `-region`.
    pub region: String,
    /// `-ttl`, seconds.
    pub ttl: u32,
    /// `-network`: take the IP on this network (default: the first).
    pub network: Option<String>,
    /// `-ip`: the address registered for `--net=host` containers.
    pub host_ip: Option<String>,
    /// Recorded as `Owner` so only this agent ever removes its registrations.
    pub owner: String,
}

/// One registration to make in skydns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The uuid it is registered under.
    pub uuid: String,
    /// The service.
    pub service: Service,
}

/// Why a container is not registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Skip {
    /// `SERVICE_IGNORE` is set.
    #[error("SERVICE_IGNORE is set")]
    Ignored,
    /// The container has no IP to register.
    #[error("no IP address{0}")]
    NoAddress(String),
    /// An override has an unusable value.
    #[error("{0}")]
    BadOverride(String),
}

/// Removes registry, repository and tag: `reg:5000/team/cool-api:v2` → `cool-api`.
pub fn clean_image_name(image: &str) -> String {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    let base = last.split(':').next().unwrap_or(last);
    base.replace('/', "")
}

/// `/redis1` → `redis1`.
pub fn remove_slash(name: &str) -> String {
    name.replace('/', "")
}

impl ContainerInfo {
    /// A label, else an env var, of that name (labels win).
    pub fn setting(&self, key: &str) -> Option<String> {
        if let Some(v) = self.labels.get(key) {
            return Some(v.clone());
        }
        self.env
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
    }

    fn setting_nonempty(&self, key: &str) -> Option<String> {
        self.setting(key).filter(|v| !v.is_empty())
    }

    /// True when the container should be in DNS now: running, not paused,
    /// and healthy if it has a HEALTHCHECK.
    pub fn eligible(&self) -> bool {
        self.running && !self.paused && self.healthy != Some(false)
    }

    /// Ports to register: published host ports, else exposed, else 80,
    /// as (container port, registered port).
    /// Port 0 is never registered (skydns rejects it).
    fn ports(&self) -> Vec<(u16, u16)> {
        let mut published: Vec<(u16, u16)> = self
            .published
            .iter()
            .copied()
            .filter(|&(_, h)| h != 0)
            .collect();
        published.sort_by_key(|&(c, h)| (h, c));
        published.dedup_by_key(|p| p.1);
        if !published.is_empty() {
            return published;
        }
        let exposed: Vec<(u16, u16)> = self
            .exposed
            .iter()
            .filter(|&&p| p != 0)
            .map(|&p| (p, p))
            .collect();
        if !exposed.is_empty() {
            return exposed;
        }
        vec![(80, 80)]
    }

    fn address(&self, defaults: &Defaults) -> Result<String, Skip> {
        if self.network_mode == "host" {
            return defaults.host_ip.clone().ok_or_else(|| {
                Skip::NoAddress(" (--net=host: start skydock with -ip <host address>)".into())
            });
        }
        let found = match &defaults.network {
            Some(net) => self.networks.iter().find(|(n, _)| n == net),
            None => self.networks.first(),
        };
        found
            .map(|(_, ip)| ip.clone())
            .ok_or_else(|| match &defaults.network {
                Some(net) => Skip::NoAddress(format!(" on network {net}")),
                None => Skip::NoAddress(String::new()),
            })
    }
}

fn is_true(v: &str) -> bool {
    !matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "" | "0" | "false" | "no" | "off"
    )
}

/// The registrations for `c` under `defaults`.
///
/// # Errors
/// [`Skip`] when the container must not be registered (ignored, no address,
/// bad override).
pub fn registrations(c: &ContainerInfo, defaults: &Defaults) -> Result<Vec<Registration>, Skip> {
    if c.setting("SERVICE_IGNORE").is_some_and(|v| is_true(&v)) {
        return Err(Skip::Ignored);
    }
    let host = c.address(defaults)?;
    let name = c
        .setting_nonempty("DNS_SERVICE")
        .or_else(|| c.setting_nonempty("SERVICE_NAME"))
        .unwrap_or_else(|| clean_image_name(&c.image));
    let instance = c
        .setting_nonempty("DNS_INSTANCE")
        .unwrap_or_else(|| remove_slash(&c.name));
    let environment = c
        .setting_nonempty("DNS_ENVIRONMENT")
        .unwrap_or_else(|| defaults.environment.clone());
    let ttl = match c.setting_nonempty("DNS_TTL") {
        Some(v) => v
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|t| *t > 0)
            .ok_or_else(|| {
                Skip::BadOverride(format!("DNS_TTL {v:?} is not a positive number of seconds"))
            })?,
        None => defaults.ttl,
    };
    let short_id: String = c.id.chars().take(10).collect();
    // Sorted by registered port: the first is the original Skydock's one.
    let ports = c.ports();
    Ok(ports
        .into_iter()
        .enumerate()
        .map(|(i, (container_port, port))| {
            let name = c
                .setting_nonempty(&format!("SERVICE_{container_port}_NAME"))
                .unwrap_or_else(|| name.clone());
            let uuid = if i == 0 {
                short_id.clone()
            } else {
                format!("{short_id}-{port}")
            };
            Registration {
                uuid,
                service: Service {
                    name,
                    version: instance.clone(),
                    environment: environment.clone(),
                    region: defaults.region.clone(),
                    host: host.clone(),
                    port,
                    ttl,
                    owner: Some(defaults.owner.clone()),
                    ..Service::default()
                },
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Defaults {
        Defaults {
            environment: "dev".into(),
            region: String::new(),
            ttl: 60,
            network: None,
            host_ip: None,
            owner: "skydock@test".into(),
        }
    }

    fn redis() -> ContainerInfo {
        ContainerInfo {
            id: "0123456789abcdef".into(),
            name: "/redis1".into(),
            image: "crosbymichael/redis:latest".into(),
            networks: vec![("bridge".into(), "172.17.0.5".into())],
            running: true,
            ..ContainerInfo::default()
        }
    }

    #[test]
    fn image_names_are_cleaned() {
        assert_eq!(clean_image_name("crosbymichael/redis:latest"), "redis");
        assert_eq!(clean_image_name("reg:5000/team/cool-api:v2"), "cool-api");
        assert_eq!(clean_image_name("redis"), "redis");
        assert_eq!(clean_image_name("localhost:5000/x@sha256:abc"), "x");
    }

    #[test]
    fn defaults_follow_the_original() {
        let r = registrations(&redis(), &defaults()).expect("registered");
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].uuid, "0123456789");
        let s = &r[0].service;
        assert_eq!(
            (s.name.as_str(), s.version.as_str(), s.environment.as_str()),
            ("redis", "redis1", "dev")
        );
        assert_eq!((s.host.as_str(), s.port, s.ttl), ("172.17.0.5", 80, 60));
        assert_eq!(s.owner.as_deref(), Some("skydock@test"));
    }

    #[test]
    fn ports_published_then_exposed_one_registration_each() {
        let mut c = redis();
        c.exposed = [6379, 8080].into();
        let r = registrations(&c, &defaults()).expect("registered");
        let got: Vec<(&str, u16)> = r
            .iter()
            .map(|r| (r.uuid.as_str(), r.service.port))
            .collect();
        // The lowest port keeps the original Skydock's uuid, the id's first 10 characters.
        assert_eq!(got, [("0123456789", 6379), ("0123456789-8080", 8080)]);
        // Published host ports sort by host port, whatever the container ports.
        c.published = vec![(8080, 49153), (6379, 49154)];
        c.labels.insert("SERVICE_8080_NAME".into(), "admin".into());
        let r = registrations(&c, &defaults()).expect("registered");
        let got: Vec<(&str, u16, &str)> = r
            .iter()
            .map(|r| (r.uuid.as_str(), r.service.port, r.service.name.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("0123456789", 49153, "admin"),
                ("0123456789-49154", 49154, "redis")
            ]
        );
    }

    /// Fuzz finding (docker_mapping): a published host port or an exposed
    /// port of 0 became a registration with Port 0, which skydns rejects.
    #[test]
    fn port_zero_is_never_registered() {
        let mut c = redis();
        c.published = vec![(6379, 0)];
        c.exposed = [0, 6379].into();
        let r = registrations(&c, &defaults()).expect("registered");
        let ports: Vec<u16> = r.iter().map(|r| r.service.port).collect();
        assert_eq!(ports, [6379]);
        c.exposed = [0].into();
        let r = registrations(&c, &defaults()).expect("registered");
        let ports: Vec<u16> = r.iter().map(|r| r.service.port).collect();
        assert_eq!(ports, [80]);
    }

    #[test]
    fn labels_beat_env_and_ignore_skips() {
        let mut c = redis();
        c.env = vec![
            "DNS_SERVICE=fromenv".into(),
            "DNS_TTL=5".into(),
            "DNS_ENVIRONMENT=prod".into(),
        ];
        c.labels.insert("DNS_SERVICE".into(), "fromlabel".into());
        let r = registrations(&c, &defaults()).expect("registered");
        assert_eq!(
            (r[0].service.name.as_str(), r[0].service.ttl),
            ("fromlabel", 5)
        );
        assert_eq!(r[0].service.environment, "prod");
        c.env.push("SERVICE_IGNORE=1".into());
        assert_eq!(registrations(&c, &defaults()), Err(Skip::Ignored));
        c.env.pop();
        c.env.push("DNS_TTL=abc".into());
        c.env.retain(|e| e != "DNS_TTL=5");
        assert!(matches!(
            registrations(&c, &defaults()),
            Err(Skip::BadOverride(_))
        ));
    }

    #[test]
    fn host_network_registers_the_host_ip() {
        let mut c = redis();
        c.network_mode = "host".into();
        c.networks.clear();
        assert!(matches!(
            registrations(&c, &defaults()),
            Err(Skip::NoAddress(_))
        ));
        let d = Defaults {
            host_ip: Some("10.1.2.3".into()),
            ..defaults()
        };
        assert_eq!(
            registrations(&c, &d).expect("registered")[0].service.host,
            "10.1.2.3"
        );
    }

    #[test]
    fn eligibility_follows_state_and_health() {
        let mut c = redis();
        assert!(c.eligible());
        c.healthy = Some(false);
        assert!(!c.eligible());
        c.healthy = Some(true);
        c.paused = true;
        assert!(!c.eligible());
    }
}
