//! What the answer path builds before encoding: a [`Reply`], the
//! [`Decision`] taken for a request, and the [`Step`] the servers act on.

use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_server::server::Request;

use super::answer::Rec;
use crate::registry::Entry;

/// What to do with a request.
#[derive(Debug)]
pub(super) enum Decision {
    /// Answer with this.
    Reply(Reply),
    /// Not ours: forward upstream (if allowed).
    Forward,
}

/// A response before encoding.
#[derive(Debug, Default)]
pub(super) struct Reply {
    pub(super) rcode: ResponseCode,
    pub(super) authoritative: bool,
    pub(super) answers: Vec<Rec>,
    pub(super) authority: Vec<Rec>,
    pub(super) additionals: Vec<Rec>,
    /// Built from the registry alone (not forwarded): the response cache may keep it.
    pub(super) cacheable: bool,
    /// Every entry the reply was built from, answered or not: a kept copy
    /// is valid only while all of them are live.
    pub(super) deps: Vec<Arc<Entry>>,
    /// Signed: a kept copy is valid until its signatures are made anew.
    pub(super) valid_until: Option<std::time::Instant>,
}

impl Reply {
    pub(super) fn error(rcode: ResponseCode) -> Self {
        Self {
            rcode,
            ..Self::default()
        }
    }
}

/// The first step of answering raw bytes: done at once, or a forward to await.
#[derive(Debug)]
pub enum Step {
    /// The response bytes (`None`: no reply is due).
    Done(Option<Vec<u8>>),
    /// A name outside the domain: finish with [`DnsHandler::finish_forward`].
    Forward(Box<Request>),
}

/// Records whose TTLs never count down (the zone's own, forwarded ones).
pub(super) fn fixed(records: impl IntoIterator<Item = hickory_proto::rr::Record>) -> Vec<Rec> {
    records.into_iter().map(Rec::fixed).collect()
}
