//! Starting and stopping a whole skydns: listeners, registry, DNS, API and
//! background tasks, under one cancellation token.
//!
//! [`start`] binds everything (so bind errors surface before it returns),
//! spawns every task into one `JoinSet`, and hands back a [`Server`] with the
//! actual addresses. [`Server::shutdown`] cancels the token and waits for
//! every task: stop intake, join, then flush (the heartbeat flusher writes
//! once more as it exits).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{net::UdpSocket, task::JoinSet};
use tokio_util::sync::CancellationToken;

use crate::{
    Error, api,
    config::Config,
    dns::{
        self, DnsHandler, DnsOptions, Zone,
        answer::TtlPolicy,
        dnssec::{Dnssec, ZoneKey},
        forward::{ForwardOptions, Forwarder},
        tcp::TcpLimits,
    },
    metrics::Metrics,
    readiness::Readiness,
    registry::{LoadReport, Registry, RegistryOptions, tasks},
    store::{MemoryStore, RedbStore, Store},
};

/// How many times to look for a port free for both UDP and TCP when port 0 is asked.
const PORT_TRIES: usize = 32;
/// How long [`run`] waits for every task to stop after the signal.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
#[cfg(feature = "etcd")]
use crate::{
    registry::feed,
    store::{EtcdOptions, EtcdStore},
};

/// Changes from etcd waiting for the registry to apply them.
#[cfg(feature = "etcd")]
const FEED_QUEUE: usize = 1024;
/// Connections the kernel queues for a TCP accept loop (DNS and HTTP).
const TCP_BACKLOG: i32 = 4096;

/// A running skydns.
#[derive(Debug)]
pub struct Server {
    dns_addr: SocketAddr,
    http_addr: SocketAddr,
    registry: Registry,
    token: CancellationToken,
    tasks: JoinSet<Result<(), Error>>,
}

impl Server {
    /// Where DNS (UDP and TCP) listens.
    pub fn dns_addr(&self) -> SocketAddr {
        self.dns_addr
    }

    /// Where the HTTP API listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The API's base URL (`http://127.0.0.1:8080`).
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// The registry, for in-process embedding.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// A token that stops the server when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Runs until the token is cancelled or a task fails, then shuts down.
    ///
    /// # Errors
    /// The first task failure.
    pub async fn wait(mut self) -> Result<(), Error> {
        let mut result = Ok(());
        tokio::select! {
            () = self.token.cancelled() => {}
            Some(done) = self.tasks.join_next() => {
                result = flatten(done);
            }
        }
        self.token.cancel();
        while let Some(done) = self.tasks.join_next().await {
            if let (Ok(()), Err(e)) = (&result, flatten(done)) {
                result = Err(e);
            }
        }
        result
    }

    /// Stops every task and waits for them.
    ///
    /// # Errors
    /// A task's failure.
    pub async fn shutdown(self) -> Result<(), Error> {
        self.token.cancel();
        self.wait().await
    }
}

/// The `-dnssec` keys, read before anything is bound so a bad file fails
/// start-up at once.
fn load_zone_keys(config: &Config) -> Result<Vec<ZoneKey>, Error> {
    if config.dnssec_keys.is_empty() {
        return Ok(Vec::new());
    }
    let origin = hickory_proto::rr::Name::from_ascii(format!("{}.", config.domain))
        .map_err(|e| crate::config::ConfigError::new("domain", format!("-domain: {e}")))?;
    let keys = config
        .dnssec_keys
        .iter()
        .map(|path| ZoneKey::load(path, &origin))
        .collect::<Result<Vec<_>, _>>()?;
    if keys.len() > 2 {
        return Err(crate::config::ConfigError::new(
            "dnssec",
            "-dnssec is given more than twice: one key, or two during a rollover",
        )
        .into());
    }
    Ok(keys)
}

fn flatten(done: Result<Result<(), Error>, tokio::task::JoinError>) -> Result<(), Error> {
    done?
}

/// Binds the listeners, restores the registry and starts every task.
///
/// # Errors
/// [`Error::Bind`] with advice, [`Error::Store`] when `-data` cannot be opened,
/// [`Error::Tls`], [`Error::Config`].
pub async fn start(config: Config) -> Result<Server, Error> {
    let zone_keys = load_zone_keys(&config)?;
    let (udp, tcp) = bind_dns(config.dns_addr).await?;
    let dns_addr = udp.local_addr()?;
    let http = listen_tcp(config.http_addr)
        .map_err(|e| Error::bind("HTTP", config.http_addr, e, "http"))?;
    let http_addr = http.local_addr()?;
    let tls = match &config.tls {
        Some(files) => Some(api::load_tls(files).await?),
        None => None,
    };

    // The API answers from here on ("starting" until the registry exists),
    // so orchestrators see a server loading its store, not a refused port.
    let token = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let readiness = Readiness::new();
    let starting = api::Starting::new();
    tasks.spawn(api::serve(
        http,
        starting.router(),
        tls,
        token.child_token(),
        config.api_limits,
    ));
    tracing::info!(http = %http_addr, "API listening http={http_addr}; loading the store (not ready yet)");

    #[cfg(feature = "etcd")]
    let etcd = match &config.etcd {
        Some(etcd) => Some(Arc::new(
            EtcdStore::connect(EtcdOptions {
                endpoints: etcd.endpoints.clone(),
                prefix: etcd.prefix.clone(),
                domain: config.domain.clone(),
                default_ttl: config.no_expire_ttl,
                tls: etcd.tls.clone(),
            })
            .await?,
        )),
        None => None,
    };
    #[cfg(not(feature = "etcd"))]
    if config.etcd.is_some() {
        return Err(crate::config::ConfigError::new(
            "etcd",
            "this skydns was built without etcd support (cargo feature `etcd`): -etcd is not available",
        )
        .into());
    }
    // -etcd and -data exclude each other (the config checks).
    let store: Arc<dyn Store> = match &config.data_dir {
        Some(dir) => Arc::new(RedbStore::open(dir)?),
        None => Arc::new(MemoryStore),
    };
    #[cfg(feature = "etcd")]
    let store = match &etcd {
        Some(etcd) => Arc::clone(etcd) as Arc<dyn Store>,
        None => store,
    };
    let metrics = Arc::new(Metrics::new());
    let options = RegistryOptions {
        domain: config.domain.clone(),
        no_expire_ttl: config.no_expire_ttl,
    };
    let (registry, report) =
        Registry::open(Arc::clone(&store), options, Arc::clone(&metrics)).await?;
    log_restore(&*store, &report);

    let zone = Zone::new(&config.domain, dns_addr.ip()).map_err(|e| {
        crate::config::ConfigError::new("domain", format!("-domain {:?}: {e}", config.domain))
    })?;
    let dnssec = (!zone_keys.is_empty()).then(|| {
        for key in &zone_keys {
            tracing::info!(
                tag = key.tag(),
                algorithm = %key.algorithm(),
                "DNSSEC: answers to queries with DO set are signed (key tag {}, {})",
                key.tag(),
                key.algorithm()
            );
        }
        Arc::new(Dnssec::new(
            zone_keys,
            &zone.origin,
            &metrics.dnssec_signatures,
        ))
    });
    let dns_options = DnsOptions {
        dnssec,
        zone,
        round_robin: config.round_robin,
        ttl: TtlPolicy {
            no_expire_ttl: config.no_expire_ttl,
            max_ttl: config.max_answer_ttl,
        },
        allow_recursion: config.allow_recursion.clone(),
    };
    let forwarder = (!config.nameservers.is_empty()).then(|| {
        Arc::new(Forwarder::new(
            ForwardOptions {
                upstreams: config.nameservers.clone(),
                timeout: config.forward_timeout,
                cache_size: config.cache_size,
                cache_max_ttl: config.cache_max_ttl,
                serve_stale: config.cache_serve_stale,
                prefetch: config.cache_prefetch,
            },
            metrics.forward.clone(),
        ))
    });
    let handler = DnsHandler::new(
        registry.clone(),
        dns_options,
        Arc::clone(&metrics),
        forwarder.clone(),
    );

    let udp = udp.into_std()?;
    dns::udp::spawn(
        &mut tasks,
        udp,
        config.dns_workers,
        handler.clone(),
        token.child_token(),
    )
    .await?;
    let limits = TcpLimits {
        max_connections: config.max_tcp_connections,
        idle: config.read_timeout,
        write: config.write_timeout,
    };
    let t = token.child_token();
    tasks.spawn(async move {
        dns::tcp::serve(tcp, handler, limits, t).await;
        Ok(())
    });

    starting.finish(api::router(
        registry.clone(),
        Arc::clone(&metrics),
        config.secret.as_ref().map(|s| s.expose().to_owned()),
        &config.api_limits,
        readiness.clone(),
    ));

    if let Some(forwarder) = forwarder {
        let t = token.child_token();
        tasks.spawn(async move {
            forwarder.run_probes(t).await;
            Ok(())
        });
    }
    #[cfg(feature = "etcd")]
    if let Some(etcd) = etcd {
        // The watch feeds the registry: other instances' writes, expiries.
        let (tx, rx) = tokio::sync::mpsc::channel(FEED_QUEUE);
        let (m, rd, t) = (Arc::clone(&metrics), readiness.clone(), token.child_token());
        tasks.spawn(async move {
            etcd.follow(tx, rd, m, t).await;
            Ok(())
        });
        let (r, t) = (registry.clone(), token.child_token());
        tasks.spawn(async move {
            feed::run_feed(r, rx, t).await;
            Ok(())
        });
    }
    let (r, t) = (registry.clone(), token.child_token());
    tasks.spawn(async move {
        tasks::run_expiry(r, t).await;
        Ok(())
    });
    let (r, t) = (registry.clone(), token.child_token());
    tasks.spawn(async move {
        tasks::run_heartbeat_flush(r, t).await;
        Ok(())
    });
    let (r, t) = (registry.clone(), token.child_token());
    tasks.spawn(async move {
        tasks::run_callbacks(r, t).await;
        Ok(())
    });

    readiness.set_ready();
    tracing::info!(
        dns = %dns_addr,
        http = %http_addr,
        domain = %config.domain,
        store = %store.describe(),
        upstreams = ?config.nameservers,
        "listening dns={dns_addr} http={http_addr}"
    );
    Ok(Server {
        dns_addr,
        http_addr,
        registry,
        token,
        tasks,
    })
}

fn log_restore(store: &dyn Store, report: &LoadReport) {
    if report.restored + report.expired + report.damaged.len() > 0 {
        tracing::info!(
            restored = report.restored,
            expired_while_down = report.expired,
            damaged = report.damaged.len(),
            "restored registrations from {}",
            store.describe()
        );
    }
    for (key, reason) in &report.damaged {
        tracing::warn!(key, reason, "stored registration could not be restored");
    }
}

/// Binds UDP and TCP on the same address. With port 0, finds a port free for both.
async fn bind_dns(addr: SocketAddr) -> Result<(UdpSocket, tokio::net::TcpListener), Error> {
    let tries = if addr.port() == 0 { PORT_TRIES } else { 1 };
    let mut last = None;
    for _ in 0..tries {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|e| Error::bind("DNS (udp)", addr, e, "dns"))?;
        let bound = udp.local_addr()?;
        match listen_tcp(bound).and_then(tokio::net::TcpListener::from_std) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some((bound, e)),
        }
    }
    let (bound, e) = last.unwrap_or((addr, std::io::Error::other("no free port")));
    Err(Error::bind("DNS (tcp)", bound, e, "dns"))
}

/// A TCP listener on `addr` with a deep accept queue ([`TCP_BACKLOG`], the
/// kernel caps it at `net.core.somaxconn`), so a burst of connections is
/// queued for the accept loop instead of dropped (`std`'s `bind` asks for
/// 128). Non-blocking, ready for the async runtime.
fn listen_tcp(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(TCP_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Runs a server until `shutdown` completes (a signal, say), then stops it.
///
/// # Errors
/// As [`start`] and [`Server::wait`].
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    let server = start(config).await?;
    let token = server.shutdown_token();
    let waiter = tokio::spawn(server.wait());
    shutdown.await;
    tracing::info!("shutting down");
    token.cancel();
    match tokio::time::timeout(SHUTDOWN_TIMEOUT, waiter).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(Error::Task(e)),
        Err(_) => Err(Error::ShutdownTimeout(SHUTDOWN_TIMEOUT)),
    }
}
