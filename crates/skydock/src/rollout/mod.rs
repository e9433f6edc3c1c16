//! `skydock rollout`: replace the containers of one service with containers of
//! a new image, dropping no request.
//!
//! 1. find the running containers of the service (by the same mapping the
//!    agent uses);
//! 2. start `--replicas` new containers with the first old one's settings
//!    (its `docker inspect`, less what its image brought: `replica`) and
//!    the new image;
//! 3. wait until each is healthy (its HEALTHCHECK, else a TCP connect to its
//!    port) and answers in skydns; if one is not within `--timeout`, remove the
//!    new ones and leave the old ones serving untouched;
//! 4. ask the agent to take the old ones out of DNS while they keep running,
//!    and wait the drain time (answer TTL + resolver cache);
//! 5. stop the old ones gracefully and remove them.

mod replica;

use std::{net::SocketAddr, time::Duration};

use bollard::{
    Docker,
    models::ImageConfig,
    query_parameters::{CreateContainerOptions, RemoveContainerOptions, StopContainerOptions},
};
use skydns_api::Client;

use crate::{
    Error, docker,
    naming::{self, ContainerInfo, Defaults},
};

/// `skydock rollout` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct RolloutCli {
    /// Service whose containers are replaced (the DNS service label, e.g. `cool-api`).
    #[arg(long)]
    pub service: String,
    /// Image of the new containers.
    #[arg(long)]
    pub image: String,
    /// How many new containers to start (default: as many as run now).
    #[arg(long)]
    pub replicas: Option<usize>,
    /// Docker socket path (default: DOCKER_HOST, else /var/run/docker.sock).
    #[arg(short = 's', long = "socket", env = "SKYDOCK_SOCKET")]
    pub socket: Option<String>,
    /// skydns API URL, to check that new containers answer.
    #[arg(long, env = "SKYDOCK_SKYDNS", default_value = "http://127.0.0.1:8080")]
    pub skydns: String,
    /// skydns secret.
    #[arg(long, env = "SKYDOCK_SECRET", hide_env_values = true)]
    pub secret: Option<skydns_api::Secret>,
    /// The running skydock agent's endpoint (its `-http`).
    #[arg(long, env = "SKYDOCK_AGENT", default_value = "http://127.0.0.1:8081")]
    pub agent: String,
    /// Seconds a new container may take to become healthy and answer in skydns.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// Seconds to keep old containers running after they leave DNS
    /// (default: their registration TTL plus `--resolver-valid`).
    #[arg(long)]
    pub drain: Option<u64>,
    /// How long resolvers (nginx `valid=`) cache answers, in seconds.
    #[arg(long, default_value_t = 5)]
    pub resolver_valid: u64,
    /// Seconds `docker stop` waits before killing an old container.
    #[arg(long, default_value_t = 10)]
    pub stop_grace: u64,
}

fn step(n: usize, text: &str) {
    println!("[{n}/5] {text}");
}

/// Runs a rollout; prints one line per step.
///
/// # Errors
/// [`Error::Rollout`] with the reason; the old containers are untouched unless
/// the failure happened after they were drained.
pub async fn run(cli: RolloutCli) -> Result<(), Error> {
    let docker = docker::connect(cli.socket.as_deref()).await?;
    let client = match &cli.secret {
        Some(s) => Client::new(&cli.skydns)?.with_secret(s.clone()),
        None => Client::new(&cli.skydns)?,
    };
    let defaults = Defaults {
        environment: String::new(),
        region: String::new(),
        ttl: 60,
        network: None,
        host_ip: None,
        owner: String::new(),
    };

    let old = find_service(&docker, &cli.service, &defaults).await?;
    if old.is_empty() {
        return Err(Error::Rollout(format!(
            "no running container of service {:?}",
            cli.service
        )));
    }
    let replicas = cli.replicas.unwrap_or(old.len()).max(1);
    step(
        1,
        &format!(
            "{} running container(s) of {}: {}",
            old.len(),
            cli.service,
            names(&old)
        ),
    );

    let first = old
        .first()
        .ok_or_else(|| Error::Rollout("no container to copy settings from".into()))?;
    let template = docker
        .inspect_container(&first.id, None)
        .await
        .map_err(|e| Error::docker(format!("inspect {}", first.name), e))?;
    let old_image = old_image_config(&docker, &template).await;
    // Checked before anything starts: a setting that cannot be copied stops
    // the rollout with the old containers untouched.
    replica::create_body(&template, old_image.as_ref(), &cli.image).map_err(Error::Rollout)?;
    let mut new_ids = Vec::new();
    for _ in 0..replicas {
        match start_like(&docker, &template, old_image.as_ref(), &cli).await {
            Ok(id) => new_ids.push(id),
            Err(e) => {
                remove_all(&docker, &new_ids).await;
                return Err(e);
            }
        }
    }
    step(
        2,
        &format!("started {replicas} container(s) of {}", cli.image),
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(cli.timeout);
    for id in &new_ids {
        if let Err(e) = wait_ready(&docker, &client, id, &cli.service, &defaults, deadline).await {
            remove_all(&docker, &new_ids).await;
            return Err(Error::Rollout(format!(
                "aborted, old containers left serving: {e}"
            )));
        }
    }
    step(3, "every new container is healthy and answers in skydns");

    let mut ttl = 0u64;
    for c in &old {
        ttl = ttl.max(registration_ttl(&client, c, &defaults).await);
        drain(&cli.agent, &client, c, &defaults).await;
    }
    let wait = Duration::from_secs(cli.drain.unwrap_or(ttl + cli.resolver_valid));
    step(
        4,
        &format!(
            "old containers out of DNS; draining for {} s",
            wait.as_secs()
        ),
    );
    tokio::time::sleep(wait).await;

    // Stop them all at once: each may take its whole grace period.
    let stops = old.iter().map(|c| {
        let docker = docker.clone();
        let grace = i32::try_from(cli.stop_grace).ok();
        async move {
            let opts = StopContainerOptions {
                t: grace,
                ..StopContainerOptions::default()
            };
            if let Err(e) = docker.stop_container(&c.id, Some(opts)).await {
                tracing::warn!(container = %c.name, error = %e, "cannot stop");
            }
        }
    });
    futures_util::future::join_all(stops).await;
    remove_all(
        &docker,
        &old.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
    )
    .await;
    step(5, &format!("stopped and removed {}", names(&old)));
    Ok(())
}

fn names(cs: &[ContainerInfo]) -> String {
    cs.iter()
        .map(|c| naming::remove_slash(&c.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Running containers whose registrations carry `service` as their name.
async fn find_service(
    docker: &Docker,
    service: &str,
    defaults: &Defaults,
) -> Result<Vec<ContainerInfo>, Error> {
    let mut out = Vec::new();
    for id in docker::running_ids(docker).await? {
        let Some(info) = docker::inspect(docker, &id).await? else {
            continue;
        };
        let regs = naming::registrations(&info, defaults).unwrap_or_default();
        if regs
            .iter()
            .any(|r| r.service.name.eq_ignore_ascii_case(service))
        {
            out.push(info);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The config of the image `template` runs, to tell what it brought from
/// what was given at `docker run`; `None` (copy everything) when the image
/// cannot be inspected.
async fn old_image_config(
    docker: &Docker,
    template: &bollard::models::ContainerInspectResponse,
) -> Option<ImageConfig> {
    let image = template.image.as_deref()?;
    match docker.inspect_image(image).await {
        Ok(i) => i.config,
        Err(e) => {
            tracing::warn!(image, error = %e, "cannot inspect the old image: copying every setting, image defaults included");
            None
        }
    }
}

/// Creates and starts a container like `template` but from the new image.
async fn start_like(
    docker: &Docker,
    template: &bollard::models::ContainerInspectResponse,
    old_image: Option<&ImageConfig>,
    cli: &RolloutCli,
) -> Result<String, Error> {
    let body = replica::create_body(template, old_image, &cli.image).map_err(Error::Rollout)?;
    let networks = replica::networks(template);
    let suffix: String = format!("{:06x}", rand_suffix());
    let name = format!("{}-{suffix}", cli.service);
    let opts = CreateContainerOptions {
        name: Some(name.clone()),
        ..CreateContainerOptions::default()
    };
    let created = docker
        .create_container(Some(opts), body)
        .await
        .map_err(|e| Error::Rollout(format!("cannot create a container of {}: {e}", cli.image)))?;
    for extra in networks.iter().skip(1) {
        let req = bollard::models::NetworkConnectRequest {
            container: created.id.clone(),
            ..Default::default()
        };
        if let Err(e) = docker.connect_network(extra, req).await {
            tracing::warn!(network = %extra, error = %e, "cannot connect the new container");
        }
    }
    if let Err(e) = docker.start_container(&created.id, None).await {
        remove_all(docker, std::slice::from_ref(&created.id)).await;
        return Err(Error::Rollout(format!("cannot start {name}: {e}")));
    }
    println!("      started {name}");
    Ok(created.id)
}

fn rand_suffix() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (nanos ^ std::process::id().rotate_left(16)) & 0x00ff_ffff
}

/// Waits until a new container is healthy and every registration of it answers in skydns.
async fn wait_ready(
    docker: &Docker,
    client: &Client,
    id: &str,
    service: &str,
    defaults: &Defaults,
    deadline: tokio::time::Instant,
) -> Result<(), String> {
    loop {
        let info = docker::inspect(docker, id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("container vanished")?;
        let name = naming::remove_slash(&info.name);
        if !info.running {
            return Err(format!("{name} is not running (exited?)"));
        }
        let healthy = match info.healthy {
            Some(h) => h,
            None => tcp_ready(&info, defaults).await,
        };
        if healthy {
            let regs =
                naming::registrations(&info, defaults).map_err(|e| format!("{name}: {e}"))?;
            let mut all = !regs.is_empty();
            for r in &regs {
                all &= client.get_service(&r.uuid).await.is_ok();
            }
            if all {
                println!("      {name} ({service}) healthy and in skydns");
                return Ok(());
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "{name} was not healthy and in skydns within the timeout"
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn tcp_ready(info: &ContainerInfo, defaults: &Defaults) -> bool {
    let Ok(regs) = naming::registrations(info, defaults) else {
        return false;
    };
    let Some(r) = regs.first() else { return false };
    // The registered port may be a published host port; the container listens on its own port.
    let port = info
        .published
        .iter()
        .find(|(_, h)| *h == r.service.port)
        .map_or(r.service.port, |(c, _)| *c);
    let Ok(ip) = r.service.host.parse::<std::net::IpAddr>() else {
        return false;
    };
    matches!(
        tokio::time::timeout(
            Duration::from_secs(1),
            tokio::net::TcpStream::connect(SocketAddr::new(ip, port))
        )
        .await,
        Ok(Ok(_))
    )
}

async fn registration_ttl(client: &Client, c: &ContainerInfo, defaults: &Defaults) -> u64 {
    let regs = naming::registrations(c, defaults).unwrap_or_default();
    let mut ttl = 0u64;
    for r in regs {
        if let Ok(s) = client.get_service(&r.uuid).await {
            ttl = ttl.max(u64::from(s.ttl));
        }
    }
    ttl
}

/// Asks the agent to take `c` out of DNS; if the agent cannot be reached,
/// removes the registrations directly (the stop that follows keeps them out).
async fn drain(agent: &str, client: &Client, c: &ContainerInfo, defaults: &Defaults) {
    let url = format!("{}/drain/{}", agent.trim_end_matches('/'), c.id);
    let ok = match reqwest::Client::new()
        .post(&url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
    {
        Ok(resp) => resp.status().is_success(),
        Err(_) => false,
    };
    if !ok {
        tracing::warn!(container = %c.name, agent, "agent endpoint unreachable; removing registrations directly");
        for r in naming::registrations(c, defaults).unwrap_or_default() {
            let _ = client.delete_service(&r.uuid).await;
        }
    }
}

async fn remove_all(docker: &Docker, ids: &[String]) {
    for id in ids {
        let opts = RemoveContainerOptions {
            force: true,
            ..RemoveContainerOptions::default()
        };
        if let Err(e) = docker.remove_container(id, Some(opts)).await {
            tracing::warn!(id, error = %e, "cannot remove container");
        }
    }
}
