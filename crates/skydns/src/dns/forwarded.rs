//! Answers for names outside the domain: from the forwarding cache without
//! waiting, or through the [`Forwarder`](super::forward::Forwarder), for
//! clients inside `-allow-recursion`; REFUSED for others.

use std::time::Instant;

use hickory_proto::op::ResponseCode;
use hickory_server::{net::xfer::Protocol, server::Request};

use super::{
    DnsHandler,
    answer::{Rec, TtlSource},
    forward::Outcome,
    reply::{Reply, fixed},
};

impl DnsHandler {
    /// A forwarded answer the forwarding cache holds, without waiting; with
    /// when it was stored and when it expires. `None`: go the async way.
    pub(super) fn forward_cached(&self, request: &Request) -> Option<(Reply, (Instant, Instant))> {
        let forwarder = self.forwarder.as_ref()?;
        if !self.may_recurse(request.src()) {
            return None;
        }
        let query = request.queries.queries().first()?;
        let (msg, stored, expires) = forwarder.cached(query.original())?;
        let elapsed = u32::try_from(stored.elapsed().as_secs()).unwrap_or(u32::MAX);
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
            deps: Vec::new(),
        };
        Some((reply, (stored, expires)))
    }

    /// Forwards a name outside the domain, for clients allowed to recurse.
    pub(super) async fn forward(&self, request: &Request) -> Reply {
        let Some(forwarder) = &self.forwarder else {
            return Reply::error(ResponseCode::Refused);
        };
        if !self.may_recurse(request.src()) {
            return Reply::error(ResponseCode::Refused);
        }
        let Some(query) = request.queries.queries().first() else {
            return Reply::error(ResponseCode::FormErr);
        };
        let tcp = request.protocol() == Protocol::Tcp;
        match forwarder
            .resolve(query.original(), request.edns.as_ref(), tcp)
            .await
        {
            Outcome::Answer(msg) => Reply {
                rcode: msg.metadata.response_code,
                authoritative: false,
                answers: fixed(msg.answers.iter().cloned()),
                authority: fixed(msg.authorities.iter().cloned()),
                additionals: fixed(msg.additionals.iter().cloned()),
                cacheable: false,
                deps: Vec::new(),
            },
            Outcome::Failed => Reply::error(ResponseCode::ServFail),
        }
    }
}
