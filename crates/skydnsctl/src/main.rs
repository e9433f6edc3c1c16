//! The `skydnsctl` binary: parse, run one API call, print, exit with a code
//! that says what went wrong (see `skydnsctl --help`).

use std::{io::Write, process::ExitCode};

use anyhow::Context;

fn main() -> ExitCode {
    let args = std::env::args_os().map(|a| a.to_string_lossy().into_owned());
    let cli = match skydnsctl::parse(args) {
        Ok(cli) => cli,
        Err(e) => {
            // Usage errors (exit 2) on stderr; --help and --version on stdout (exit 0).
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(skydnsctl::exit::USAGE));
        }
    };
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map(|rt| rt.block_on(skydnsctl::execute(&cli)));
    match result {
        Ok(Ok(text)) => {
            let mut out = std::io::stdout().lock();
            // A closed pipe (`skydnsctl list | head -1`) is not an error.
            let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
            ExitCode::from(skydnsctl::exit::OK)
        }
        Ok(Err(failure)) => {
            eprintln!("skydnsctl: {failure}");
            ExitCode::from(failure.code)
        }
        Err(e) => {
            eprintln!("skydnsctl: {e:#}");
            ExitCode::from(skydnsctl::exit::GENERAL)
        }
    }
}
