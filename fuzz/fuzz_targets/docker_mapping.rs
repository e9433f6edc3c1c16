//! skydock's Docker → service mapping: `docker inspect` JSON (bollard's
//! `ContainerInspectResponse`) and engine events in, registrations out.
//!
//! Input: byte 0 chooses the mode:
//! - 0: the rest is `docker inspect` JSON → `docker::to_info` →
//!   `naming::registrations` under fuzzed defaults;
//! - 1: the rest is an engine event's JSON → `docker::to_event`;
//! - else: the rest is structured (`arbitrary`) into a `ContainerInfo` and
//!   `Defaults` directly.
//!
//! Invariants besides "no panic": registrations have distinct uuids, a TTL
//! above 0, a port, the agent's owner, and the container's first 10 id
//! characters as the uuid prefix.
#![no_main]

use std::collections::{BTreeSet, HashMap};

use arbitrary::{Arbitrary, Unstructured};
use bollard::models::{ContainerInspectResponse, EventMessage};
use libfuzzer_sys::fuzz_target;
use skydock::{
    docker::{to_event, to_info},
    naming::{ContainerInfo, Defaults, registrations},
};

#[derive(Debug, Arbitrary)]
struct ArbDefaults {
    environment: String,
    region: String,
    ttl: u32,
    network: Option<String>,
    host_ip: Option<String>,
}

impl ArbDefaults {
    fn into_defaults(self) -> Defaults {
        Defaults {
            environment: self.environment,
            region: self.region,
            ttl: self.ttl.max(1),
            network: self.network,
            host_ip: self.host_ip,
            owner: "skydock-fuzz".into(),
        }
    }
}

#[derive(Debug, Arbitrary)]
struct ArbInfo {
    id: String,
    name: String,
    image: String,
    env: Vec<String>,
    labels: HashMap<String, String>,
    exposed: BTreeSet<u16>,
    published: Vec<(u16, u16)>,
    networks: Vec<(String, String)>,
    host_mode: bool,
    running: bool,
    paused: bool,
    healthy: Option<bool>,
}

impl ArbInfo {
    fn into_info(self) -> ContainerInfo {
        ContainerInfo {
            id: self.id,
            name: self.name,
            image: self.image,
            env: self.env,
            labels: self.labels,
            exposed: self.exposed,
            published: self.published,
            networks: self.networks,
            network_mode: if self.host_mode {
                "host".into()
            } else {
                "bridge".into()
            },
            running: self.running,
            paused: self.paused,
            healthy: self.healthy,
        }
    }
}

fn check(info: &ContainerInfo, defaults: &Defaults) {
    let _ = info.eligible();
    let Ok(regs) = registrations(info, defaults) else {
        return;
    };
    assert!(
        !regs.is_empty(),
        "a registered container needs a registration"
    );
    let prefix: String = info.id.chars().take(10).collect();
    let mut seen = BTreeSet::new();
    for r in &regs {
        assert!(seen.insert(r.uuid.clone()), "duplicate uuid {:?}", r.uuid);
        assert!(
            r.uuid.starts_with(&prefix),
            "uuid {:?} lost the id prefix",
            r.uuid
        );
        assert!(r.service.ttl > 0, "TTL 0 for {:?}", r.uuid);
        assert_eq!(r.service.owner.as_deref(), Some(defaults.owner.as_str()));
        assert!(r.service.port != 0, "port 0 for {:?}", r.uuid);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        0 => {
            let Ok(resp) = serde_json::from_slice::<ContainerInspectResponse>(rest) else {
                return;
            };
            let info = to_info(resp);
            let defaults = Defaults {
                environment: "dev".into(),
                region: "local".into(),
                ttl: 30,
                network: None,
                host_ip: Some("192.0.2.10".into()),
                owner: "skydock-fuzz".into(),
            };
            check(&info, &defaults);
            let on_net = Defaults {
                network: info.networks.last().map(|(n, _)| n.clone()),
                ..defaults
            };
            check(&info, &on_net);
        }
        1 => {
            let Ok(msg) = serde_json::from_slice::<EventMessage>(rest) else {
                return;
            };
            let actor_id = msg.actor.as_ref().and_then(|a| a.id.clone());
            if let Some(ev) = to_event(msg) {
                assert_eq!(Some(ev.id), actor_id, "event id is not the actor's");
            }
        }
        _ => {
            let mut u = Unstructured::new(rest);
            let (Ok(info), Ok(defaults)) =
                (ArbInfo::arbitrary(&mut u), ArbDefaults::arbitrary(&mut u))
            else {
                return;
            };
            check(&info.into_info(), &defaults.into_defaults());
        }
    }
});
