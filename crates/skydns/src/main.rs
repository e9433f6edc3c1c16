//! The `skydns` binary: parse flags, set up logging, run the library.

use anyhow::Context;
use tracing_subscriber::EnvFilter;

fn main() {
    if let Err(e) = real_main() {
        eprintln!("skydns: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> anyhow::Result<()> {
    let cli = skydns::Cli::parse_args();
    init_logging(&cli.log_level, &cli.log_format)?;
    for flag in cli.ignored_flags() {
        tracing::warn!(
            "{flag} is accepted for SkyDNS v1 compatibility and ignored: metrics are served at /metrics"
        );
    }
    let config = skydns::Config::try_from(cli)?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if config.workers > 0 {
        runtime.worker_threads(config.workers);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let shutdown = shutdown_signal().context("cannot install the signal handlers")?;
        skydns::run(config, shutdown)
            .await
            .map_err(anyhow::Error::from)
    })?;
    Ok(())
}

fn init_logging(level: &str, format: &str) -> anyhow::Result<()> {
    // hickory logs every query at info; keep it at warn unless asked.
    let filter = EnvFilter::try_new(format!("hickory_server=warn,hickory_net=warn,{level}"))
        .with_context(|| format!("-log-level {level:?} is not a valid filter"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        "json" => builder.json().init(),
        "text" => builder.init(),
        other => anyhow::bail!("-log-format {other:?}: use text or json"),
    }
    Ok(())
}

/// Installs the SIGTERM and SIGINT handlers at once — before anything
/// listens, so a signal that arrives right after start still stops the
/// daemon cleanly instead of killing it — and returns a future that completes
/// on the first of them.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}
