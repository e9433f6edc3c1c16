//! The original Skydock's JavaScript plugin contract, on QuickJS (rquickjs).
//!
//! A plugin file defines `createService(container)`. It receives the inspected
//! container (Docker's JSON, with `Image` set to the image *name* and
//! `NetworkSettings.IpAddress` to the container's IP, as in 2014), sees the
//! globals `defaultEnvironment` and `defaultTTL` and the helpers
//! `cleanImageName()` and `removeSlash()`, and returns
//! `{Port, Environment, TTL, Service, Instance, Host}`. A plugin error is
//! reported with the plugin's file and line; the caller skips that container.
//!
//! Every evaluation has a time budget (`-plugin-timeout`): QuickJS's
//! interrupt handler stops a script that runs past it (`while (true) {}`),
//! so one bad plugin can only cost its budget per container, never the agent.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde::Deserialize;
use skydns_api::Service;

use crate::{
    Error,
    naming::{Defaults, Registration},
};

/// The helpers every plugin sees, written to match `naming::clean_image_name`
/// and `naming::remove_slash` exactly.
const PRELUDE: &str = r#"
function removeSlash(name) { return String(name).split("/").join(""); }
function cleanImageName(name) {
    var s = String(name).split("@")[0];
    var parts = s.split("/");
    var last = parts[parts.length - 1];
    return removeSlash(last.split(":")[0]);
}
"#;

/// Memory one evaluation may use.
const MEMORY_LIMIT: usize = 32 * 1024 * 1024;

/// The default time budget of one evaluation (`-plugin-timeout`).
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(1);

/// Why a plugin gave no registration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The script ran past its time budget and was interrupted.
    #[error("{file}: ran longer than its {budget:?} budget (-plugin-timeout) and was interrupted")]
    Timeout {
        /// The plugin file.
        file: String,
        /// The budget it ran out of.
        budget: Duration,
    },
    /// The script threw, or returned something unusable (file and line when known).
    #[error("{0}")]
    Script(String),
}

impl From<String> for PluginError {
    fn from(s: String) -> Self {
        Self::Script(s)
    }
}

/// A loaded plugin file.
#[derive(Debug, Clone)]
pub struct Plugin {
    path: String,
    source: String,
    environment: String,
    ttl: u32,
    /// How long one evaluation (loading the file and calling
    /// `createService`) may run before it is interrupted.
    budget: Duration,
}

/// What `createService` returns.
#[derive(Debug, Deserialize)]
struct Created {
    #[serde(rename = "Port", default)]
    port: serde_json::Value,
    #[serde(rename = "Environment", default)]
    environment: Option<String>,
    #[serde(rename = "TTL", default)]
    ttl: serde_json::Value,
    #[serde(rename = "Service", default)]
    service: Option<String>,
    #[serde(rename = "Instance", default)]
    instance: Option<String>,
    #[serde(rename = "Host", default)]
    host: Option<String>,
}

fn number(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl Plugin {
    /// Loads and checks `path` (syntax errors are reported here, with the
    /// line); every later evaluation may run for `budget`.
    ///
    /// # Errors
    /// [`Error::Config`] when the file cannot be read, does not parse, runs
    /// past `budget` at load, or defines no `createService`.
    pub fn load(path: &str, defaults: &Defaults, budget: Duration) -> Result<Self, Error> {
        let source = std::fs::read_to_string(path)
            .map_err(|e| Error::config("plugins", format!("-plugins {path}: cannot read: {e}")))?;
        let plugin = Self {
            path: path.to_string(),
            source,
            environment: defaults.environment.clone(),
            ttl: defaults.ttl,
            budget,
        };
        plugin
            .with_context(|ctx| {
                let f: rquickjs::Value<'_> = ctx
                    .globals()
                    .get("createService")
                    .map_err(|e| e.to_string())?;
                if f.is_function() {
                    Ok(())
                } else {
                    Err("defines no function createService(container)".to_string())
                }
            })
            .map_err(|e| match e {
                PluginError::Timeout { .. } => Error::config("plugins", format!("-plugins {e}")),
                PluginError::Script(e) => Error::config("plugins", format!("-plugins {path}: {e}")),
            })?;
        Ok(plugin)
    }

    /// The time budget of one evaluation.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// Runs the prelude, the file and then `f` in a fresh runtime, all within
    /// the time budget.
    fn with_context<T>(
        &self,
        f: impl FnOnce(&rquickjs::Ctx<'_>) -> Result<T, String>,
    ) -> Result<T, PluginError> {
        let rt = rquickjs::Runtime::new().map_err(|e| e.to_string())?;
        rt.set_memory_limit(MEMORY_LIMIT);
        // QuickJS calls this every few thousand instructions; `true` stops
        // the script with an uncatchable "interrupted" exception.
        let deadline = Instant::now() + self.budget;
        let overran = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&overran);
        rt.set_interrupt_handler(Some(Box::new(move || {
            let over = Instant::now() >= deadline;
            if over {
                flag.store(true, Ordering::Relaxed);
            }
            over
        })));
        let ctx = rquickjs::Context::full(&rt).map_err(|e| e.to_string())?;
        let result = ctx.with(|ctx| {
            let globals = format!(
                "var defaultEnvironment = {}; var defaultTTL = {};\n{PRELUDE}",
                serde_json::Value::String(self.environment.clone()),
                self.ttl
            );
            ctx.eval::<(), _>(globals)
                .map_err(|e| describe(&ctx, e, "prelude"))?;
            let mut opts = rquickjs::context::EvalOptions::default();
            opts.filename = Some(self.path.clone());
            ctx.eval_with_options::<(), _>(self.source.clone(), opts)
                .map_err(|e| describe(&ctx, e, &self.path))?;
            f(&ctx)
        });
        if overran.load(Ordering::Relaxed) {
            return Err(PluginError::Timeout {
                file: self.path.clone(),
                budget: self.budget,
            });
        }
        Ok(result?)
    }

    /// Calls `createService` for one container.
    ///
    /// # Errors
    /// [`PluginError::Timeout`] when it runs past its budget;
    /// [`PluginError::Script`] with the plugin's exception (file and line) or
    /// a description of what its result lacks.
    pub fn registration(
        &self,
        container: &serde_json::Value,
        defaults: &Defaults,
    ) -> Result<Registration, PluginError> {
        let input = plugin_view(container, defaults);
        let text = serde_json::to_string(&input).map_err(|e| PluginError::Script(e.to_string()))?;
        let out = self.with_context(|ctx| {
            let f: rquickjs::Function<'_> = ctx
                .globals()
                .get("createService")
                .map_err(|e| e.to_string())?;
            let arg = ctx
                .json_parse(text)
                .map_err(|e| describe(ctx, e, &self.path))?;
            let result: rquickjs::Value<'_> =
                f.call((arg,)).map_err(|e| describe(ctx, e, &self.path))?;
            let json = ctx
                .json_stringify(result)
                .map_err(|e| describe(ctx, e, &self.path))?;
            json.map(|s| s.to_string().map_err(|e| e.to_string()))
                .transpose()?
                .ok_or_else(|| "createService returned undefined".to_string())
        })?;
        let created: Created = serde_json::from_str(&out)
            .map_err(|e| format!("{}: createService returned {out}: {e}", self.path))?;
        self.registration_from(created, container, defaults)
    }

    fn registration_from(
        &self,
        created: Created,
        container: &serde_json::Value,
        defaults: &Defaults,
    ) -> Result<Registration, PluginError> {
        let id = container
            .get("Id")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let host = created.host.filter(|h| !h.is_empty()).ok_or_else(|| {
            PluginError::Script(format!("{}: createService returned no Host", self.path))
        })?;
        let port = number(&created.port)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0)
            .unwrap_or(80);
        let ttl = number(&created.ttl)
            .and_then(|t| u32::try_from(t).ok())
            .filter(|t| *t > 0)
            .unwrap_or(defaults.ttl);
        Ok(Registration {
            uuid: id.chars().take(10).collect(),
            service: Service {
                name: created.service.unwrap_or_default(),
                version: created.instance.unwrap_or_default(),
                environment: created
                    .environment
                    .filter(|e| !e.is_empty())
                    .unwrap_or_else(|| defaults.environment.clone()),
                region: defaults.region.clone(),
                host,
                port,
                ttl,
                owner: Some(defaults.owner.clone()),
                ..Service::default()
            },
        })
    }
}

/// The container as 2014's plugins saw it: `Image` is the image name and
/// `NetworkSettings.IpAddress` the container's address.
fn plugin_view(container: &serde_json::Value, defaults: &Defaults) -> serde_json::Value {
    let mut c = container.clone();
    let image = c.pointer("/Config/Image").cloned().unwrap_or_default();
    let networks = c
        .pointer("/NetworkSettings/Networks")
        .and_then(|n| n.as_object())
        .cloned()
        .unwrap_or_default();
    let mut names: Vec<&String> = networks.keys().collect();
    names.sort();
    let pick = match &defaults.network {
        Some(n) => networks.get(n),
        None => names.iter().filter_map(|n| networks.get(*n)).find(|ep| {
            ep.get("IPAddress")
                .and_then(|v| v.as_str())
                .is_some_and(|s| !s.is_empty())
        }),
    };
    let mut ip = pick
        .and_then(|ep| ep.get("IPAddress"))
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    if c.pointer("/HostConfig/NetworkMode")
        .and_then(|v| v.as_str())
        == Some("host")
    {
        ip = defaults.host_ip.clone().unwrap_or_default();
    }
    if let Some(obj) = c.as_object_mut() {
        obj.insert("Image".into(), image);
    }
    if let Some(ns) = c.get_mut("NetworkSettings").and_then(|v| v.as_object_mut()) {
        ns.insert("IpAddress".into(), ip.clone().into());
        ns.insert("IPAddress".into(), ip.into());
        ns.entry("Ports").or_insert_with(|| serde_json::json!({}));
    }
    if let Some(cfg) = c.get_mut("Config").and_then(|v| v.as_object_mut()) {
        cfg.entry("Env").or_insert_with(|| serde_json::json!([]));
    }
    c
}

/// An exception as "file:line: message".
fn describe(ctx: &rquickjs::Ctx<'_>, e: rquickjs::Error, file: &str) -> String {
    if !e.is_exception() {
        return format!("{file}: {e}");
    }
    let exc = ctx.catch();
    match exc.as_exception() {
        Some(ex) => {
            let message = ex.message().unwrap_or_default();
            let stack = ex.stack().unwrap_or_default();
            let place = stack
                .lines()
                .find_map(|l| {
                    l.split_once(file).map(|(_, rest)| {
                        rest.trim_start_matches(':')
                            .trim_end_matches(')')
                            .to_string()
                    })
                })
                .map(|line| format!("{file}:{line}"))
                .unwrap_or_else(|| file.to_string());
            format!("{place}: {message}")
        }
        None => format!("{file}: thrown {exc:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::naming::{self, ContainerInfo};

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

    fn plugin_path(name: &str) -> String {
        format!("{}/../../deploy/plugins/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    /// Docker's inspect JSON for a container started as
    /// `docker run -e DNS_... -p 49153:6379 --expose 8080 crosbymichael/redis:latest`.
    fn inspect(env: &[&str], published: bool) -> serde_json::Value {
        let ports = if published {
            serde_json::json!({"6379/tcp": [{"HostIp": "0.0.0.0", "HostPort": "49153"}], "8080/tcp": null})
        } else {
            serde_json::json!({"6379/tcp": null, "8080/tcp": null})
        };
        serde_json::json!({
            "Id": "0123456789abcdef0123",
            "Name": "/redis1",
            "Image": "sha256:feedface",
            "Config": {"Image": "crosbymichael/redis:latest", "Env": env, "ExposedPorts": {"6379/tcp": {}, "8080/tcp": {}}},
            "HostConfig": {"NetworkMode": "bridge"},
            "NetworkSettings": {"Ports": ports, "Networks": {"bridge": {"IPAddress": "172.17.0.5"}}}
        })
    }

    fn info(env: &[&str], published: bool) -> ContainerInfo {
        ContainerInfo {
            id: "0123456789abcdef0123".into(),
            name: "/redis1".into(),
            image: "crosbymichael/redis:latest".into(),
            env: env.iter().map(|s| s.to_string()).collect(),
            exposed: [6379, 8080].into(),
            published: if published {
                vec![(6379, 49153)]
            } else {
                Vec::new()
            },
            networks: vec![("bridge".into(), "172.17.0.5".into())],
            running: true,
            ..ContainerInfo::default()
        }
    }

    #[test]
    fn default_js_equals_the_built_in_mapping() {
        let p =
            Plugin::load(&plugin_path("default.js"), &defaults(), DEFAULT_BUDGET).expect("loads");
        for published in [true, false] {
            let from_js = p
                .registration(&inspect(&[], published), &defaults())
                .expect("maps");
            let built_in = naming::registrations(&info(&[], published), &defaults()).expect("maps");
            let first = &built_in[0].service;
            assert_eq!(from_js.uuid, "0123456789");
            assert_eq!(from_js.service.name, first.name);
            assert_eq!(from_js.service.version, first.version);
            assert_eq!(from_js.service.environment, first.environment);
            assert_eq!(from_js.service.host, first.host);
            assert_eq!(from_js.service.ttl, first.ttl);
            assert_eq!(
                from_js.service.port, first.port,
                "lowest published, else lowest exposed"
            );
        }
    }

    #[test]
    fn container_env_js_equals_the_built_in_overrides() {
        let p = Plugin::load(&plugin_path("containerEnv.js"), &defaults(), DEFAULT_BUDGET)
            .expect("loads");
        let env = [
            "DNS_SERVICE=cache",
            "DNS_INSTANCE=c1",
            "DNS_ENVIRONMENT=prod",
            "DNS_TTL=5",
            "PATH=/bin",
        ];
        let from_js = p
            .registration(&inspect(&env, false), &defaults())
            .expect("maps");
        let built_in = naming::registrations(&info(&env, false), &defaults()).expect("maps");
        let b = &built_in[0].service;
        assert_eq!(
            (
                &from_js.service.name,
                &from_js.service.version,
                &from_js.service.environment,
                from_js.service.ttl
            ),
            (&b.name, &b.version, &b.environment, b.ttl)
        );
    }

    #[test]
    fn plugin_errors_name_the_file_and_line() {
        let dir = std::env::temp_dir().join(format!("skydock-plugin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let bad = dir.join("bad.js");
        std::fs::write(
            &bad,
            "function createService(c) {\n  return c.Nope.Deeper;\n}\n",
        )
        .expect("write");
        let p =
            Plugin::load(bad.to_str().expect("utf8"), &defaults(), DEFAULT_BUDGET).expect("loads");
        let err = p
            .registration(&inspect(&[], false), &defaults())
            .expect_err("throws")
            .to_string();
        assert!(err.contains("bad.js:2"), "{err}");
        let syntax = dir.join("syntax.js");
        std::fs::write(&syntax, "function createService(c) {\n  return {;\n}\n").expect("write");
        assert!(Plugin::load(syntax.to_str().expect("utf8"), &defaults(), DEFAULT_BUDGET).is_err());
        let none = dir.join("none.js");
        std::fs::write(&none, "var x = 1;\n").expect("write");
        assert!(Plugin::load(none.to_str().expect("utf8"), &defaults(), DEFAULT_BUDGET).is_err());
    }

    #[test]
    fn a_looping_plugin_is_interrupted_at_its_budget() {
        let dir = tempfile_dir("loop");
        let looping = dir.join("loop.js");
        std::fs::write(
            &looping,
            "function createService(c) {\n  if (c.Name.indexOf('loop') >= 0) { while (true) {} }\n  return {Host: '10.0.0.1'};\n}\n",
        )
        .expect("write");
        let budget = Duration::from_millis(200);
        let p = Plugin::load(looping.to_str().expect("utf8"), &defaults(), budget).expect("loads");
        let mut looper = inspect(&[], false);
        looper["Name"] = "/loop-1".into();
        let started = Instant::now();
        let err = p
            .registration(&looper, &defaults())
            .expect_err("interrupted");
        assert!(matches!(err, PluginError::Timeout { .. }), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        // The next container maps normally: every call has a fresh runtime and budget.
        let fine = p
            .registration(&inspect(&[], false), &defaults())
            .expect("maps");
        assert_eq!(fine.service.host, "10.0.0.1");
        // A file that loops at load time is refused at start.
        let at_load = dir.join("at_load.js");
        std::fs::write(
            &at_load,
            "for (;;) {}\nfunction createService(c) { return {}; }\n",
        )
        .expect("write");
        let e = Plugin::load(at_load.to_str().expect("utf8"), &defaults(), budget)
            .expect_err("refused");
        assert!(e.to_string().contains("budget"), "{e}");
    }

    fn tempfile_dir(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("skydock-plugin-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }
}
