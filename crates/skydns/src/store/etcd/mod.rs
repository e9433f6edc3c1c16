//! The shared store: etcd (v3 API), for several skydns instances serving one
//! registry (`-etcd`).
//!
//! etcd is the source of truth; every instance answers DNS from its own
//! in-memory index, kept current by one watch ([`feed`]). Writes are
//! acknowledged once etcd has committed them:
//! - a registration is one transaction that claims `_skydns/uuid/<uuid>`
//!   (only if no other registration holds it: the 409 rule across
//!   instances) and writes the record, both under a lease of the
//!   service's TTL;
//! - a heartbeat renews that lease (`LeaseKeepAlive`, answered by the
//!   leader and not written to the raft log), so thousands of heartbeating
//!   services do not become thousands of etcd writes a second; a heartbeat
//!   with another TTL moves the record to a new lease (a write);
//! - a removal is one transaction that deletes the record and its uuid
//!   claim and leaves a short-lived `fired` marker, which tells the other
//!   instances the service was removed (not expired) and that its
//!   callbacks have been fired.
//!
//! Expiry is etcd's: when a lease runs out, etcd deletes the record once,
//! and every instance sees the deletion. The callbacks of an expired
//! service are fired by the one instance whose `fired` claim (a
//! create-if-absent transaction) wins.
//!
//! `layout` says where records live (SkyDNS2 / CoreDNS keys); `feed` keeps
//! the index current.

mod feed;
mod layout;

use std::{
    path::Path,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use dashmap::DashMap;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, KeyValue,
    PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse,
};
use tokio::sync::mpsc;

pub use feed::FeedEvent;
use layout::{KeyKind, Layout};

use super::{LOAD_BATCH, Loaded, Op, Store, StoreError, StoredService};
use crate::{config::EtcdTls, registry::lock};

/// Keys read per range request when loading (etcd's default gRPC message
/// limit is 2 MiB on the server side for requests, 4 MiB for responses).
const PAGE: i64 = 1000;
/// Time allowed to one request; an unreachable etcd fails a write in
/// about this long (and at once while the watch knows it is down).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// HTTP/2 pings that notice a dead connection (and so a dead watch) that
/// no reset announced (a partition). Never more often than etcd's
/// `--grpc-keepalive-min-time` (5 s by default): etcd closes the connection
/// of a client that pings more often ("too many pings").
const KEEPALIVE_EVERY: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);
/// Retries of a request that never reached a member (each endpoint once,
/// and then some), and the pause between them.
const UNSENT_RETRIES: usize = 5;
const UNSENT_PAUSE: Duration = Duration::from_millis(50);
/// Lease of the `fired` markers: long enough for every instance to see
/// the removal, or to re-read after a disconnection that long.
const MARKER_TTL: i64 = 600;
/// A marker lease is reused for this long, then a new one is granted.
const MARKER_REUSE: Duration = Duration::from_secs(300);

/// Where etcd is and how to reach it (`-etcd`, `-etcd-prefix`, TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdOptions {
    /// Client URLs (`http://10.0.0.1:2379`), any member of one cluster.
    pub endpoints: Vec<String>,
    /// Root of every key (`/skydns`).
    pub prefix: String,
    /// The DNS domain; records live under its labels reversed.
    pub domain: String,
    /// TTL answered for a record written by another tool without `ttl`.
    pub default_ttl: u32,
    /// TLS to etcd: CA bundle, client certificate and key (PEM).
    pub tls: EtcdTls,
}

/// What etcd holds for one registration, as last seen.
#[derive(Debug, Clone)]
struct Held {
    key: String,
    lease: i64,
    /// Create revision: names this incarnation of the uuid.
    created: i64,
    /// Mod revision: a watch event at or below it is one already applied.
    modified: i64,
    ttl: u32,
    has_callbacks: bool,
}

/// One page of a read at one revision.
struct Page {
    revision: i64,
    records: Vec<(StoredService, Held)>,
    damaged: Vec<(String, String)>,
    /// Where the next page starts; `None` after the last.
    next: Option<Vec<u8>>,
}

/// The etcd-backed [`Store`].
pub struct EtcdStore {
    client: Client,
    layout: Layout,
    endpoints: String,
    default_ttl: u32,
    /// uuid → what etcd holds for it (from the load, our writes, the watch).
    held: DashMap<String, Held>,
    /// The revision the index reflects; the watch goes on from the next.
    revision: AtomicI64,
    /// False while the watch cannot reach etcd: writes fail at once then.
    reachable: AtomicBool,
    marker: Mutex<Option<(i64, Instant)>>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .field("zone", &self.layout.zone())
            .finish_non_exhaustive()
    }
}

fn etcd_error(endpoints: &str, e: &etcd_client::Error) -> StoreError {
    StoreError::Etcd {
        endpoints: endpoints.to_string(),
        reason: e.to_string(),
    }
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path).map_err(|e| StoreError::Etcd {
        endpoints: String::new(),
        reason: format!("cannot read the etcd {what} {}: {e}", path.display()),
    })
}

impl EtcdStore {
    /// Connects to etcd and checks that it answers.
    ///
    /// # Errors
    /// [`StoreError::Etcd`] when no endpoint answers or a TLS file cannot be read.
    pub async fn connect(options: EtcdOptions) -> Result<Self, StoreError> {
        let endpoints = options.endpoints.join(",");
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(REQUEST_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(KEEPALIVE_EVERY, KEEPALIVE_TIMEOUT)
            // etcd refuses pings on a connection without streams; the
            // watch keeps one open.
            .with_keep_alive_while_idle(false)
            .with_require_leader(true);
        if options.tls.any() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &options.tls.ca {
                tls = tls.ca_certificate(Certificate::from_pem(read_file(ca, "CA file")?));
            }
            if let (Some(cert), Some(key)) = (&options.tls.cert, &options.tls.key) {
                tls = tls.identity(Identity::from_pem(
                    read_file(cert, "client certificate")?,
                    read_file(key, "client key")?,
                ));
            }
            connect = connect.with_tls(tls);
        }
        let mut client = Client::connect(&options.endpoints, Some(connect))
            .await
            .map_err(|e| etcd_error(&endpoints, &e))?;
        // `connect` is lazy: ask once, so a wrong address fails the start.
        client
            .status()
            .await
            .map_err(|e| etcd_error(&endpoints, &e))?;
        Ok(Self {
            client,
            layout: Layout::new(&options.prefix, &options.domain),
            endpoints,
            default_ttl: options.default_ttl,
            held: DashMap::new(),
            revision: AtomicI64::new(0),
            reachable: AtomicBool::new(true),
            marker: Mutex::new(None),
        })
    }

    fn fail(&self, e: &etcd_client::Error) -> StoreError {
        etcd_error(&self.endpoints, e)
    }

    /// Runs one request, again on another member when it was never sent
    /// (the member it went to refused the connection): the client balances
    /// over every endpoint, a dead one among them until it notices.
    async fn call<T, F, Fut>(&self, mut request: F) -> Result<T, StoreError>
    where
        F: FnMut(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut attempt = 0;
        loop {
            match request(self.client.clone()).await {
                Ok(v) => return Ok(v),
                Err(e) if attempt < UNSENT_RETRIES && never_sent(&e) => {
                    attempt += 1;
                    tokio::time::sleep(UNSENT_PAUSE).await;
                }
                Err(e) => return Err(self.fail(&e)),
            }
        }
    }

    /// Fails at once while the watch knows etcd is unreachable.
    fn check_reachable(&self) -> Result<(), StoreError> {
        if self.reachable.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(StoreError::Etcd {
                endpoints: self.endpoints.clone(),
                reason: "etcd is unreachable; the change was not stored".into(),
            })
        }
    }

    /// One record read from etcd, with what to remember of it; `Err`
    /// names the key and why it is not a service.
    fn parse(&self, kv: &KeyValue) -> Option<Result<(StoredService, Held), (String, String)>> {
        let key = String::from_utf8_lossy(kv.key()).into_owned();
        let KeyKind::Record(labels) = self.layout.kind(&key) else {
            return None;
        };
        Some(
            match layout::decode(&key, &labels, kv.value(), self.default_ttl) {
                Ok(record) => {
                    let held = Held {
                        key: key.clone(),
                        lease: kv.lease(),
                        created: kv.create_revision(),
                        modified: kv.mod_revision(),
                        ttl: record.service.ttl,
                        has_callbacks: !record.callbacks.is_empty(),
                    };
                    Ok((record, held))
                }
                Err(why) => Err((key, why)),
            },
        )
    }

    /// Reads one page of records from `from` (inclusive) at `revision`
    /// (0: now; the page tells which revision it read).
    async fn read_page(&self, from: Vec<u8>, revision: i64) -> Result<Page, StoreError> {
        let end = prefix_end(self.layout.zone().as_bytes());
        let mut options = GetOptions::new().with_range(end).with_limit(PAGE);
        if revision > 0 {
            options = options.with_revision(revision);
        }
        let resp = self
            .call(|mut c| {
                let (from, options) = (from.clone(), options.clone());
                async move { c.get(from, Some(options)).await }
            })
            .await?;
        let mut page = Page {
            revision: if revision > 0 {
                revision
            } else {
                resp.header()
                    .map_or(0, etcd_client::ResponseHeader::revision)
            },
            records: Vec::with_capacity(resp.kvs().len()),
            damaged: Vec::new(),
            next: None,
        };
        for kv in resp.kvs() {
            match self.parse(kv) {
                Some(Ok(record)) => page.records.push(record),
                Some(Err(bad)) => page.damaged.push(bad),
                None => {}
            }
        }
        if resp.more()
            && let Some(last) = resp.kvs().last()
        {
            let mut next = last.key().to_vec();
            next.push(0);
            page.next = Some(next);
        }
        Ok(page)
    }

    async fn txn(&self, txn: Txn) -> Result<etcd_client::TxnResponse, StoreError> {
        self.call(|mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await
    }

    async fn grant(&self, ttl: u32) -> Result<i64, StoreError> {
        let resp = self
            .call(|mut c| async move { c.lease_grant(i64::from(ttl.max(1)), None).await })
            .await?;
        Ok(resp.id())
    }

    async fn revoke(&self, lease: i64) {
        if lease != 0
            && let Err(e) = self
                .call(|mut c| async move { c.lease_revoke(lease).await })
                .await
        {
            tracing::debug!(lease, error = %e, "cannot revoke an unused lease; it runs out by itself");
        }
    }

    /// A lease for `fired` markers, reused for a while.
    async fn marker_lease(&self) -> Result<i64, StoreError> {
        if let Some((id, at)) = *lock(&self.marker)
            && at.elapsed() < MARKER_REUSE
        {
            return Ok(id);
        }
        let resp = self
            .call(|mut c| async move { c.lease_grant(MARKER_TTL, None).await })
            .await?;
        *lock(&self.marker) = Some((resp.id(), Instant::now()));
        Ok(resp.id())
    }

    async fn create(&self, record: StoredService) -> Result<(), StoreError> {
        let uuid = record.service.uuid.clone();
        let key = self.layout.record_key(&record.service);
        let claim = self.layout.uuid_key(&uuid);
        let value = layout::encode(&record).map_err(|e| StoreError::Corrupt {
            key: key.clone(),
            reason: e.to_string(),
        })?;
        let ttl = record.service.ttl;
        let lease = if record.service.no_expire {
            0
        } else {
            self.grant(ttl).await?
        };
        for attempt in 0..2 {
            let put = PutOptions::new().with_lease(lease);
            let txn = Txn::new()
                .when([Compare::version(claim.clone(), CompareOp::Equal, 0)])
                .and_then([
                    TxnOp::put(claim.clone(), key.clone(), Some(put.clone())),
                    TxnOp::put(key.clone(), value.clone(), Some(put.clone())),
                ])
                .or_else([TxnOp::get(claim.clone(), None)]);
            let resp = match self.txn(txn).await {
                Ok(resp) => resp,
                Err(e) => {
                    self.revoke(lease).await;
                    return Err(e);
                }
            };
            if resp.succeeded() {
                let revision = resp
                    .header()
                    .map_or(0, etcd_client::ResponseHeader::revision);
                self.held.insert(
                    uuid,
                    Held {
                        key,
                        lease,
                        created: revision,
                        modified: revision,
                        ttl,
                        has_callbacks: !record.callbacks.is_empty(),
                    },
                );
                return Ok(());
            }
            // The uuid is claimed: by a live record, or by one another tool
            // deleted without its claim. Free an orphan once and retry.
            let holder = resp.op_responses().into_iter().find_map(|r| match r {
                TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.value().to_vec()),
                _ => None,
            });
            let orphan = match &holder {
                Some(record_key) if attempt == 0 => {
                    self.call(|mut c| {
                        let key = record_key.clone();
                        async move { c.get(key, Some(GetOptions::new().with_count_only())).await }
                    })
                    .await?
                    .count()
                        == 0
                }
                _ => false,
            };
            if !orphan {
                break;
            }
            if let Some(record_key) = holder {
                let free = Txn::new()
                    .when([Compare::value(claim.clone(), CompareOp::Equal, record_key)])
                    .and_then([TxnOp::delete(claim.clone(), None)]);
                self.txn(free).await?;
            }
        }
        self.revoke(lease).await;
        Err(StoreError::Exists { uuid })
    }

    /// Rewrites a held record (its callbacks changed), on its lease.
    async fn replace(&self, record: StoredService) -> Result<(), StoreError> {
        let uuid = record.service.uuid.clone();
        let Some(held) = self.held.get(&uuid).map(|h| h.clone()) else {
            return Err(StoreError::Missing { uuid });
        };
        let value = layout::encode(&record).map_err(|e| StoreError::Corrupt {
            key: held.key.clone(),
            reason: e.to_string(),
        })?;
        let txn = Txn::new()
            .when([Compare::version(held.key.clone(), CompareOp::Greater, 0)])
            .and_then([TxnOp::put(
                held.key.clone(),
                value,
                Some(PutOptions::new().with_lease(held.lease)),
            )]);
        let resp = self.txn(txn).await?;
        if !resp.succeeded() {
            return Err(StoreError::Missing { uuid });
        }
        let revision = resp
            .header()
            .map_or(0, etcd_client::ResponseHeader::revision);
        if let Some(mut h) = self.held.get_mut(&uuid) {
            h.modified = revision;
            h.has_callbacks = !record.callbacks.is_empty();
        }
        Ok(())
    }

    async fn delete(&self, uuid: &str) -> Result<(), StoreError> {
        let Some(held) = self.held.get(uuid).map(|h| h.clone()) else {
            return Err(StoreError::Missing { uuid: uuid.into() });
        };
        let marker = self.marker_lease().await?;
        let txn = Txn::new()
            .when([Compare::version(held.key.clone(), CompareOp::Greater, 0)])
            .and_then([
                TxnOp::delete(held.key.clone(), None),
                TxnOp::delete(self.layout.uuid_key(uuid), None),
                TxnOp::put(
                    self.layout.fired_key(uuid, held.created),
                    "removed",
                    Some(PutOptions::new().with_lease(marker)),
                ),
            ]);
        let resp = self.txn(txn).await?;
        self.held.remove_if(uuid, |_, h| h.created == held.created);
        if !resp.succeeded() {
            return Err(StoreError::Missing { uuid: uuid.into() });
        }
        self.revoke(held.lease).await;
        Ok(())
    }

    /// Claims the right to fire the callbacks of `uuid`'s incarnation
    /// `created`: true for exactly one instance.
    async fn claim(&self, uuid: &str, created: i64) -> Result<bool, StoreError> {
        let key = self.layout.fired_key(uuid, created);
        let marker = self.marker_lease().await?;
        let txn = Txn::new()
            .when([Compare::version(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key,
                "expired",
                Some(PutOptions::new().with_lease(marker)),
            )]);
        let resp = self.txn(txn).await?;
        Ok(resp.succeeded())
    }

    /// Whether `uuid`'s incarnation `created` was removed by an instance.
    async fn was_removed(&self, uuid: &str, created: i64) -> Result<bool, StoreError> {
        let key = self.layout.fired_key(uuid, created);
        let resp = self
            .call(|mut c| {
                let key = key.clone();
                async move { c.get(key, None).await }
            })
            .await?;
        Ok(resp
            .kvs()
            .first()
            .is_some_and(|kv| kv.value() == b"removed"))
    }
}

/// True for an error that says the request never left (a refused or failed
/// connection): safe to send again, even a transaction.
fn never_sent(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) => true,
        etcd_client::Error::GRpcStatus(s) => {
            s.code() == tonic::Code::Unavailable && s.message().contains("connect")
        }
        _ => false,
    }
}

/// The end of the range of keys starting with `prefix` (etcd's `--prefix`).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn load(&self, batches: mpsc::Sender<Vec<StoredService>>) -> Result<Loaded, StoreError> {
        let mut from = Some(self.layout.zone().as_bytes().to_vec());
        let (mut revision, mut damaged) = (0, Vec::new());
        while let Some(start) = from {
            let page = self.read_page(start, revision).await?;
            revision = page.revision;
            damaged.extend(page.damaged);
            from = page.next;
            let mut batch = Vec::with_capacity(page.records.len().min(LOAD_BATCH));
            for (record, held) in page.records {
                self.held.insert(record.service.uuid.clone(), held);
                batch.push(record);
            }
            if !batch.is_empty() && batches.send(batch).await.is_err() {
                return Err(StoreError::Abandoned);
            }
        }
        self.revision.store(revision, Ordering::Release);
        Ok(Loaded {
            damaged,
            lost: Vec::new(),
        })
    }

    async fn commit(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        if ops.iter().all(|op| matches!(op, Op::Touch(..))) {
            return Ok(()); // heartbeats renew leases (keep_alive), never a write
        }
        self.check_reachable()?;
        for op in ops {
            match op {
                Op::Create(record) => self.create(record).await?,
                Op::Put(record) => self.replace(record).await?,
                Op::Remove(uuid) => match self.delete(&uuid).await {
                    Ok(()) | Err(StoreError::Missing { .. }) => {}
                    Err(e) => return Err(e),
                },
                Op::Touch(..) => {}
            }
        }
        Ok(())
    }

    fn owns_expiry(&self) -> bool {
        true
    }

    async fn keep_alive(&self, uuid: &str, ttl: u32) -> Result<bool, StoreError> {
        self.check_reachable()?;
        let Some(held) = self.held.get(uuid).map(|h| h.clone()) else {
            return Ok(false);
        };
        if held.lease == 0 {
            return Ok(true); // NoExpire, or written by another tool without a lease
        }
        if ttl == held.ttl {
            let lease = held.lease;
            let renewed = self
                .call(|mut c| async move {
                    match c.lease_keep_alive(lease).await {
                        Ok(_) => Ok(true),
                        Err(etcd_client::Error::LeaseKeepAliveError(_)) => Ok(false),
                        Err(e) => Err(e),
                    }
                })
                .await?;
            return Ok(renewed);
        }
        // Another TTL: the record moves to a new lease. The watch brings the
        // rewritten record back, and the index answers the new TTL.
        let resp = self
            .call(|mut c| {
                let key = held.key.clone();
                async move { c.get(key, None).await }
            })
            .await?;
        let Some(current) = resp.kvs().first() else {
            return Ok(false);
        };
        let Some(Ok((mut record, _))) = self.parse(current) else {
            return Ok(false);
        };
        record.service.ttl = ttl;
        let value = layout::encode(&record).map_err(|e| StoreError::Corrupt {
            key: held.key.clone(),
            reason: e.to_string(),
        })?;
        let lease = self.grant(ttl).await?;
        let put = PutOptions::new().with_lease(lease);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                held.key.clone(),
                CompareOp::Equal,
                current.mod_revision(),
            )])
            .and_then([
                TxnOp::put(held.key.clone(), value, Some(put.clone())),
                TxnOp::put(
                    self.layout.uuid_key(uuid),
                    held.key.clone(),
                    Some(put.clone()),
                ),
            ]);
        let resp = self.txn(txn).await?;
        if !resp.succeeded() {
            self.revoke(lease).await;
            return Ok(false);
        }
        if let Some(mut h) = self.held.get_mut(uuid) {
            h.lease = lease;
            h.ttl = ttl;
        }
        self.revoke(held.lease).await;
        Ok(true)
    }

    fn describe(&self) -> String {
        format!(
            "etcd at {} (records under {})",
            self.endpoints,
            self.layout.zone()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_range_ends_after_every_key_below_it() {
        assert_eq!(prefix_end(b"/skydns/"), b"/skydns0".to_vec());
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b".to_vec());
        assert_eq!(prefix_end(&[0xff]), vec![0]);
    }
}
