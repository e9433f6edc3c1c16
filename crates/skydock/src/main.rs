//! The `skydock` binary: parse flags, set up logging, run the library until SIGTERM.

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

fn main() {
    if let Err(e) = real_main() {
        eprintln!("skydock: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> anyhow::Result<()> {
    let mut cli = skydock::Cli::parse_args();
    if let Some(skydock::Command::Rollout(rollout_cli)) = cli.command.take() {
        return rollout(rollout_cli);
    }
    let filter = EnvFilter::try_new(&cli.log_level)
        .with_context(|| format!("-log-level {:?}", cli.log_level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format.as_str() {
        "json" => builder.json().init(),
        "text" => builder.init(),
        other => anyhow::bail!("-log-format {other:?}: use text or json"),
    }
    let link = std::env::var("SKYDNS_PORT_8080_TCP_ADDR").ok().map(|addr| {
        (
            addr,
            std::env::var("SKYDNS_PORT_8080_TCP_PORT").unwrap_or_else(|_| "8080".into()),
        )
    });
    let config = skydock::Config::from_cli(cli, link)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let token = CancellationToken::new();
        let stopper = token.clone();
        let shutdown = shutdown_signal().context("cannot install the signal handlers")?;
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down");
            stopper.cancel();
        });
        skydock::run(config, token)
            .await
            .map_err(anyhow::Error::from)
    })?;
    Ok(())
}

/// `skydock rollout --service S --image I [--replicas N]`.
fn rollout(cli: skydock::rollout::RolloutCli) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new("warn").context("log filter")?)
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(skydock::rollout::run(cli))?;
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
