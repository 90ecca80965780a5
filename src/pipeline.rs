//! One connection's envelopes, handled in the order the client sent them (docs/protocol.md §4):
//! relayed at once while nothing is ahead of them, forwarded one at a time, and otherwise waiting
//! in line behind a forward. The connection stops reading when the line is full.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Uri};
use tracing::Instrument;

use crate::answer::Answers;
use crate::envelope::Envelope;
use crate::forward::{self, Call, Outcome, Target};
use crate::hub::Hub;
use crate::id::ConnectionId;
use crate::identity::Identity;
use crate::info::ConnectionInfo;
use crate::pace::Pace;

/// How one connection's forwards leave: its call and the headers of its upgrade request.
pub(crate) struct Forwarder {
    pub(crate) call: Call,
    pub(crate) copied: HeaderMap,
}

/// One envelope to handle.
pub(crate) enum Work {
    Relay(Envelope),
    Forward { envelope: Envelope, asker: Asker },
}

/// Who is told how a forward ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Asker {
    /// Nobody: it is a connection event (`__connect`, `__disconnect`); a failure is logged.
    Nobody,
    /// The client: a failure as `__error`, and a `__reply` when it sent a `requestId`.
    Client(Option<String>),
}

/// A forward under way and who is told how it ended.
type InFlight = (Pin<Box<dyn Future<Output = Outcome> + Send>>, Asker);

pub(crate) struct Pipeline {
    id: ConnectionId,
    /// Who the connection is; its groups are read from the hub while it is registered.
    identity: Identity,
    forwarder: Option<Forwarder>,
    waiting: VecDeque<Work>,
    in_flight: Option<InFlight>,
}

impl Pipeline {
    pub(crate) fn new(id: ConnectionId, identity: Identity, forwarder: Option<Forwarder>) -> Self {
        Self {
            id,
            identity,
            forwarder,
            waiting: VecDeque::new(),
            in_flight: None,
        }
    }

    /// Whether envelopes with `action` go to the application rather than straight to recipients.
    pub(crate) fn forwards(&self, hub: &Hub, action: &str) -> bool {
        self.forwarder.is_some()
            && hub
                .config()
                .forwarding
                .as_ref()
                .is_some_and(|f| f.forwards(action))
    }

    /// Whether so many envelopes wait that the client should not be read from for now.
    pub(crate) fn is_full(&self, hub: &Hub) -> bool {
        let max = hub
            .config()
            .forwarding
            .as_ref()
            .map_or(usize::MAX, |f| f.max_pending);
        self.waiting.len() >= max
    }

    /// Takes an envelope in line; [`advance`](Self::advance) handles it.
    pub(crate) fn push(&mut self, work: Work) {
        self.waiting.push_back(work);
    }

    /// Relays envelopes from the front of the line until one must be forwarded, and starts that;
    /// a relayed request is answered once routed. Paced like every producer: a forward's answer
    /// can release a whole line of relays.
    pub(crate) async fn advance(&mut self, hub: &Hub, answers: &Answers, pace: &mut Pace) {
        while self.in_flight.is_none() {
            match self.waiting.pop_front() {
                None => return,
                Some(Work::Relay(mut envelope)) => {
                    let request = envelope.request_id.take();
                    hub.send(&envelope);
                    if let Some(id) = request {
                        answers.reply(&id, None);
                    }
                    pace.tick().await;
                }
                Some(Work::Forward { envelope, asker }) => {
                    self.in_flight = self.start(hub, &envelope).map(|f| (f, asker));
                }
            }
        }
    }

    /// Resolves when the forward under way is answered, with its outcome and who is to be told;
    /// never resolves when there is none.
    pub(crate) async fn answered(&mut self) -> (Outcome, Asker) {
        let Some((future, _)) = self.in_flight.as_mut() else {
            return std::future::pending().await;
        };
        let outcome = future.await;
        let asker = self
            .in_flight
            .take()
            .map_or(Asker::Nobody, |(_, asker)| asker);
        (outcome, asker)
    }

    /// Whether anything is still waiting or under way.
    pub(crate) fn is_idle(&self) -> bool {
        self.in_flight.is_none() && self.waiting.is_empty()
    }

    fn start(
        &mut self,
        hub: &Hub,
        envelope: &Envelope,
    ) -> Option<Pin<Box<dyn Future<Output = Outcome> + Send>>> {
        let forwarder = self.forwarder.as_mut()?;
        let config = hub.config().forwarding.as_ref()?;
        let uri: &Uri = match &config.target {
            Target::InProcess(uri) | Target::External(uri) => uri,
        };
        // After the socket has closed (its last forwards, `__disconnect`), the groups it had
        // when it connected stand in for the ones it had at the end.
        let mut groups = hub
            .local_groups_of(self.id)
            .unwrap_or_else(|| self.identity.groups.clone());
        // The registry keeps groups sorted; the connection's own groupId comes first.
        if let Some(at) = groups.iter().position(|g| g == self.identity.group_id()) {
            groups[..=at].rotate_right(1);
        }
        let sender = ConnectionInfo::new(self.id, self.identity.user_id.clone(), groups)
            .with_data_of(self.identity.data.clone());
        let request = forward::build_request(
            uri,
            Bytes::from(envelope.to_json()),
            &sender,
            hub.config().fields,
            &forwarder.copied,
            &config.extra_headers,
        );
        // In process, a 404 almost always means the layer wraps each route of the router (where
        // `router.layer(..)` puts it) instead of the router: say so where the developer looks.
        let misplaced = matches!(config.target, Target::InProcess(_)).then(|| {
            format!(
                "the application answered 404 Not Found for {}: if that route exists, the hub's \
                 layer probably wraps each route (`router.layer(hub.layer(..))`) instead of the \
                 whole router (`hub.layer(..).layer(router)`)",
                uri.path()
            )
        });
        let call = (forwarder.call)(request);
        // Inside the socket's span, so the application's handler (in process) logs as part of
        // the socket's life.
        let span = tracing::info_span!(
            "forward",
            action = %envelope.action,
            request = envelope.request_id.as_deref(),
        );
        let slots = hub.forward_slots().clone();
        let timeout = config.timeout;
        let limits = hub.config().fields;
        let clock = hub.meters().forward_duration();
        Some(Box::pin(
            async move {
                let started = Instant::now();
                let answered = async {
                    // The place is held until the answer is read, bounding forwards in flight.
                    let _place = slots.acquire_owned().await;
                    call.await
                };
                let answer = tokio::time::timeout(timeout, answered).await;
                clock.took(started.elapsed());
                match answer {
                    Ok(Ok(response)) if response.status() == http::StatusCode::NOT_FOUND => {
                        match misplaced {
                            Some(hint) => Outcome::failed("forward_failed", hint),
                            None => Outcome::of(response, limits),
                        }
                    }
                    Ok(Ok(response)) => Outcome::of(response, limits),
                    Ok(Err(detail)) => Outcome::failed("forward_failed", detail),
                    Err(_) => Outcome::failed(
                        "forward_timeout",
                        format!("the application did not answer within {timeout:?}"),
                    ),
                }
            }
            .instrument(span),
        ))
    }
}
