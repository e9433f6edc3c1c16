//! Answers for names outside the domain: from the forwarding cache without
//! waiting, or through the [`Forwarder`](super::forward::Forwarder), for
//! clients inside `-allow-recursion`; REFUSED for others.

use std::time::Instant;

use hickory_proto::op::ResponseCode;
use hickory_server::{net::xfer::Protocol, server::Request};
use prometheus_client::metrics::counter::Counter;

use super::{
    DnsHandler,
    answer::{Rec, TtlSource},
    forward::{Answer, Asked, Outcome},
    reply::Reply,
};

/// Where a reply from the forwarding cache came from, for the response
/// cache's copy of it.
#[derive(Debug)]
pub(super) struct FromCache {
    /// When the forwarding cache stored the answer (TTLs count from here).
    pub(super) stored: Instant,
    /// Until when a copy may be served without asking that cache again.
    pub(super) keep_until: Instant,
    /// The cached answer's hit counter: copies count as hits (prefetch).
    pub(super) hits: Counter,
}

impl DnsHandler {
    /// A forwarded answer the forwarding cache holds, without waiting, with
    /// where it came from; starts its prefetch when one is due. `None`: go
    /// the async way.
    pub(super) fn forward_cached(&self, request: &Request) -> Option<(Reply, FromCache)> {
        let forwarder = self.forwarder.as_ref()?;
        if !self.may_recurse(request.src()) {
            return None;
        }
        let query = request.queries.queries().first()?;
        let cached = forwarder.cached(query.original(), request.edns.as_ref())?;
        if cached.refresh {
            forwarder.prefetch(query.original().clone(), request.edns.clone());
        }
        let msg = &cached.message;
        let elapsed = u32::try_from(cached.stored.elapsed().as_secs()).unwrap_or(u32::MAX);
        let counted = |records: &[hickory_proto::rr::Record]| -> Vec<Rec> {
            records
                .iter()
                .map(|r| {
                    let mut record = r.clone();
                    record.ttl = r.ttl.saturating_sub(elapsed);
                    Rec {
                        record,
                        source: TtlSource::Upstream(r.ttl),
                    }
                })
                .collect()
        };
        let reply = Reply {
            rcode: msg.metadata.response_code,
            authoritative: false,
            answers: counted(&msg.answers),
            authority: counted(&msg.authorities),
            additionals: counted(&msg.additionals),
            cacheable: true,
            ..Reply::default()
        };
        let from = FromCache {
            stored: cached.stored,
            keep_until: cached.keep_until,
            hits: cached.hits,
        };
        Some((reply, from))
    }

    /// Forwards a name outside the domain, for clients allowed to recurse:
    /// the upstream's answer, or the rcode to answer with instead.
    pub(super) async fn forward(&self, request: &Request) -> Result<Answer, ResponseCode> {
        let Some(forwarder) = &self.forwarder else {
            return Err(ResponseCode::Refused);
        };
        if !self.may_recurse(request.src()) {
            return Err(ResponseCode::Refused);
        }
        let Some(query) = request.queries.queries().first() else {
            return Err(ResponseCode::FormErr);
        };
        let asked = Asked {
            query: query.original(),
            // The question as the client wrote it, when it asked exactly one.
            wire: (request.queries.len() == 1).then(|| request.queries.as_bytes()),
            edns: request.edns.as_ref(),
            tcp: request.protocol() == Protocol::Tcp,
        };
        match forwarder.resolve(asked).await {
            Outcome::Answer(answer) => Ok(answer),
            Outcome::Failed => Err(ResponseCode::ServFail),
        }
    }
}
