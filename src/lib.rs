//! # wshub
//!
//! A real-time WebSocket hub inside any tower, axum or hyper server. One [`HubLayer`] owns the
//! socket path and hands each socket to a shared registry of connections, groups and users; a
//! [`PublishService`] lets any backend send to those sockets over plain HTTP; and [`Hub::send`]
//! does the same from Rust. Every message is one JSON [`Envelope`] of the
//! [wire protocol](https://github.com/wshub/wshub/blob/main/docs/protocol.md), a superset of
//! West Wind Web Connection's hybrid WebSocket protocol.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use tower::Layer;
//!
//! # async fn run() -> std::io::Result<()> {
//! let hub = wshub::Hub::builder().build();
//! let app = Router::new()
//!     .route("/", get(|| async { "a page whose script opens ws://host/ws?groupId=room-1" }))
//!     .route_service("/api/publish", hub.publish_service().bearer_token("a long secret"));
//! // The hub wraps the WHOLE router: every request that is not an upgrade on /ws passes through.
//! let app = hub.layer("/ws").layer(app);
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! // `axum::serve` with header-read and keep-alive limits and a shutdown deadline.
//! wshub::serve(listener, app)
//!     .with_graceful_shutdown(hub.shutdown_on(async { tokio::signal::ctrl_c().await.ok(); }))
//!     .await
//! # }
//! ```
//!
//! Then any backend can publish:
//!
//! ```text
//! curl -H 'Authorization: Bearer a long secret' http://127.0.0.1:3000/api/publish \
//!      -d '{"action":"news","message":"hello","recipients":[{"type":"group","value":"room-1"}]}'
//! {"delivered":1}
//! ```
//!
//! [`serve`] serves any tower service of hyper's requests, axum or not. With an accept loop of
//! your own, serve connections with hyper's `serve_connection(..).with_upgrades()` (or
//! hyper-util's `serve_connection_with_upgrades`), or the upgrade cannot complete.
//!
//! The hub reports through the [`metrics`](https://docs.rs/metrics) facade and logs through
//! `tracing`. Install a metrics recorder (Prometheus's exporter, say) **before** building the
//! hub: the series it reports per message are registered when it is built. The names, and what to
//! alert on, are in docs/operations.md.

#![forbid(unsafe_code)]

mod answer;
mod budget;
mod client_files;
mod closing;
#[cfg(feature = "cluster")]
mod cluster;
mod config;
mod connection;
mod data;
mod envelope;
mod error;
#[cfg(feature = "axum")]
mod extract;
mod forward;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
mod handshake;
mod hub;
mod id;
mod identity;
mod inbound;
mod info;
mod layer;
mod mailbox;
mod membership;
mod meters;
mod node;
mod notice;
mod pace;
mod pipeline;
mod publish;
mod registry;
mod reply;
mod routing;
mod server;
#[cfg(feature = "testing")]
pub mod testing;
mod websocket;

pub use closing::CloseReason;
#[cfg(feature = "cluster")]
pub use cluster::RedisCluster;
pub use config::HubBuilder;
pub use envelope::{Envelope, Recipient, RecipientKind};
pub use error::{EnvelopeError, HubError};
#[cfg(feature = "axum")]
pub use extract::Forwarded;
pub use forward::{ForwardUrlError, Forwarding, RequestBody};
pub use hub::Hub;
pub use id::{ConnectionId, ParseConnectionIdError};
pub use identity::{
    identity_from_cookie, refuse, refuse_by_closing, Identity, IdentityFuture, IdentityResolver,
    Refusal, LOGGED_OUT,
};
pub use info::ConnectionInfo;
pub use layer::{HubLayer, HubService, ResponseFuture};
pub use publish::{PublishEndpoint, PublishService};
pub use reply::Reply;
pub use routing::EmptyRecipients;
pub use server::{serve, Serve};

/// The README's examples compile as doc tests, so the quick start cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// So do docs/forwarding.md's.
#[cfg(doctest)]
#[doc = include_str!("../docs/forwarding.md")]
struct ForwardingDoctests;

/// And docs/testing.md's, which use `wshub::testing` and the `Forwarded` extractor: CI runs the
/// doc tests with `--all-features`.
#[cfg(all(doctest, feature = "testing", feature = "axum"))]
#[doc = include_str!("../docs/testing.md")]
struct TestingDoctests;
