//! Start-up time: exec a server, then query it over UDP every 0.5 ms until
//! it answers, and read its memory 1 s later.

use std::{
    net::UdpSocket,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use hickory_proto::{
    op::{Message, ResponseCode},
    rr::RecordType,
};
use serde::Serialize;

use crate::process::Memory;

/// One start.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FirstAnswer {
    /// exec → the first NOERROR answer with at least the wanted records.
    pub(crate) ms: f64,
    /// Its memory 1 s after that answer.
    pub(crate) memory: Memory,
}

/// Execs `program args` (listening for DNS on 127.0.0.1:`port`), asks
/// `name rtype` until the answer is NOERROR with at least `min_answers`
/// records (at most 30 s), then stops it.
pub(crate) async fn measure(
    program: &Path,
    args: Vec<String>,
    port: u16,
    (name, rtype): (&str, RecordType),
    min_answers: usize,
) -> anyhow::Result<FirstAnswer> {
    let program = program.to_path_buf();
    let query = skydns_tests::query_message(name, rtype, None);
    tokio::task::spawn_blocking(move || {
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        sock.connect(("127.0.0.1", port))?;
        sock.set_read_timeout(Some(Duration::from_millis(5)))?;
        let started = Instant::now();
        let mut child = Command::new(&program)
            .args(&args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let result = wait_for_answer(&sock, &query, min_answers, started, &mut child);
        let outcome = result.map(|ms| {
            std::thread::sleep(Duration::from_secs(1));
            FirstAnswer {
                ms,
                memory: Memory::of(child.id()),
            }
        });
        let _ = child.kill();
        let _ = child.wait();
        outcome
    })
    .await
    .context("the start-up probe failed")?
}

fn wait_for_answer(
    sock: &UdpSocket,
    query: &Message,
    min_answers: usize,
    started: Instant,
    child: &mut std::process::Child,
) -> anyhow::Result<f64> {
    let mut buf = [0u8; 4096];
    let mut msg = query.clone();
    loop {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("no answer within 30 s");
        }
        if let Some(status) = child.try_wait()? {
            bail!("the server exited with {status}");
        }
        let id: u16 = rand::random();
        msg.metadata.id = id;
        let bytes = msg.to_vec()?;
        if sock.send(&bytes).is_err() {
            std::thread::sleep(Duration::from_micros(500));
            continue;
        }
        // Read until this query's answer or a timeout: a late answer to an
        // earlier query must not leave every later read one behind.
        while let Ok(n) = sock.recv(&mut buf) {
            let Ok(answer) = Message::from_vec(buf.get(..n).unwrap_or_default()) else {
                continue;
            };
            if answer.metadata.id != id {
                continue;
            }
            if answer.metadata.response_code == ResponseCode::NoError
                && answer.answers.len() >= min_answers
            {
                return Ok(started.elapsed().as_secs_f64() * 1000.0);
            }
            break;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}
