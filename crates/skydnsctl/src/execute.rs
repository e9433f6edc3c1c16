//! One API call per command, and the text to print on success.

use std::io::Read;

use skydns_api::{Callback, Client, ClientError, Service};

use crate::*;

/// Runs the command against the server; the text to print on stdout
/// (newline-terminated) on success.
///
/// # Errors
/// A [`Failure`] with its exit code and one line of explanation.
pub async fn execute(cli: &Cli) -> Result<String, Failure> {
    let client = Client::with_timeout(&cli.url, cli.timeout)
        .map_err(|e| Failure::from_client(&e, &cli.url, cli.timeout))?;
    let client = match &cli.secret {
        Some(s) => client.with_secret(s.clone()),
        None => client,
    };
    let base = client.base_url().to_string();
    let api = |e: ClientError| Failure::from_client(&e, &base, cli.timeout);
    let ok = |human: String| -> String {
        if cli.json {
            "{\"ok\":true}\n".to_string()
        } else {
            human + "\n"
        }
    };
    match &cli.command {
        Command::Add(args) => {
            let service = service_from_args(args)?;
            client
                .add_service(&args.uuid, &service)
                .await
                .map_err(api)?;
            Ok(ok(format!("added service {:?}", args.uuid)))
        }
        Command::Get { uuid } => {
            let service = client.get_service(uuid).await.map_err(api)?;
            if cli.json {
                to_json(&service)
            } else {
                Ok(format_service(&service))
            }
        }
        Command::List { query } => {
            let query = query.as_deref().filter(|q| !q.is_empty());
            let services = client.list_services(query).await.map_err(api)?;
            if cli.json {
                to_json(&services)
            } else if services.is_empty() {
                Ok(match query {
                    Some(q) => format!("no services match {q:?}\n"),
                    None => "no services registered\n".to_string(),
                })
            } else {
                Ok(format_table(&services))
            }
        }
        Command::Heartbeat { uuid, ttl } => {
            client.heartbeat(uuid, *ttl).await.map_err(api)?;
            Ok(ok(format!(
                "service {uuid:?} lives {} more",
                format_ttl(*ttl)
            )))
        }
        Command::Delete { uuid } => {
            client.delete_service(uuid).await.map_err(api)?;
            Ok(ok(format!("deleted service {uuid:?}")))
        }
        Command::Callback(CallbackCommand::Add(args)) => {
            let callback = callback_from_args(args)?;
            client
                .add_callback(&args.uuid, &callback)
                .await
                .map_err(api)?;
            Ok(ok(format!(
                "added callback {:?}: DELETE http://{}/skydns/callbacks/{} when a matching service goes",
                args.uuid,
                host_port(&callback.reply, callback.port),
                args.uuid
            )))
        }
        Command::Regions => {
            let counts = client.regions().await.map_err(api)?;
            if cli.json {
                to_json(&counts)
            } else {
                Ok(format_counts("REGION", &counts))
            }
        }
        Command::Environments => {
            let counts = client.environments().await.map_err(api)?;
            if cli.json {
                to_json(&counts)
            } else {
                Ok(format_counts("ENVIRONMENT", &counts))
            }
        }
    }
}

pub(crate) fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, Failure> {
    serde_json::to_string(value)
        .map(|s| s + "\n")
        .map_err(|e| Failure::new(exit::GENERAL, format!("cannot write JSON: {e}")))
}

/// Reads a `--json`/`--body` argument: literal JSON, `@file`, or `-` (stdin).
pub(crate) fn read_body(spec: &str) -> Result<String, Failure> {
    if spec == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| Failure::usage(format!("--json -: cannot read stdin: {e}")))?;
        Ok(s)
    } else if let Some(path) = spec.strip_prefix('@') {
        std::fs::read_to_string(path).map_err(|e| Failure::usage(format!("--json @{path}: {e}")))
    } else {
        Ok(spec.to_string())
    }
}

pub(crate) fn parse_body<T: serde::de::DeserializeOwned + Default>(
    spec: Option<&str>,
) -> Result<T, Failure> {
    let Some(spec) = spec else {
        return Ok(T::default());
    };
    let text = read_body(spec)?;
    serde_json::from_str(&text).map_err(|e| Failure::usage(format!("--json body: {e}")))
}

/// The service `add` registers: the `--json` body (if any) with the flags
/// laid over it.
///
/// # Errors
/// A usage [`Failure`] when the body cannot be read or parsed.
pub(crate) fn service_from_args(args: &AddArgs) -> Result<Service, Failure> {
    let mut s: Service = parse_body(args.body.as_deref())?;
    set(&mut s.name, &args.name);
    set(&mut s.version, &args.version);
    set(&mut s.environment, &args.environment);
    set(&mut s.region, &args.region);
    set(&mut s.host, &args.host);
    if let Some(p) = args.port {
        s.port = p;
    }
    if let Some(t) = args.ttl {
        s.ttl = t;
    }
    if args.no_expire {
        s.no_expire = true;
    }
    if let Some(o) = &args.owner {
        s.owner = Some(o.clone());
    }
    // The URL names the service; the server decides the deadline.
    s.uuid = String::new();
    s.expires = None;
    Ok(s)
}

/// The callback `callback add` registers: the `--json` body (if any) with the
/// flags laid over it.
///
/// # Errors
/// A usage [`Failure`] when the body cannot be read or parsed.
pub(crate) fn callback_from_args(args: &CallbackArgs) -> Result<Callback, Failure> {
    let mut c: Callback = parse_body(args.body.as_deref())?;
    set(&mut c.name, &args.name);
    set(&mut c.version, &args.version);
    set(&mut c.environment, &args.environment);
    set(&mut c.region, &args.region);
    set(&mut c.host, &args.host);
    set(&mut c.reply, &args.reply);
    if let Some(p) = args.port {
        c.port = p;
    }
    c.uuid = String::new();
    Ok(c)
}

pub(crate) fn set(field: &mut String, flag: &Option<String>) {
    if let Some(v) = flag {
        field.clone_from(v);
    }
}

/// `host:port`, with IPv6 addresses in brackets.
pub(crate) fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
