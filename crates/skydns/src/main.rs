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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(skydns::run(config, shutdown_signal()))?;
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

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
