//! `/status`: a live page for a person to look at rather than read logs. It polls `/metrics`
//! about once a second and shows the sockets open now and opened, messages received, deliveries
//! and envelopes sent per second (from the difference between two polls), closes by reason and
//! the refused upgrades, refused messages and failed forwards; and, from `/api/status`, every
//! room with how many people and sockets are in it.
//!
//! `/api/status` is `{"rooms": [{"room", "people", "sockets"}, ...], "max_rooms": 100}`, busiest
//! room first: at most [`MAX_ROOMS`](crate::rooms::MAX_ROOMS) rooms exist. In a cluster the rooms
//! are the whole chat's (they live in Redis) while `/metrics` is this node's.
//!
//! Open, like `/metrics`: room names say who talks about what, so keep the port private or put
//! both routes behind the operator's auth like `/api/logout`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::rooms::{Store, MAX_ROOMS};

/// `/status` (the page) and `/api/status` (the rooms it shows), over the chat's `rooms`.
pub(crate) fn routes(rooms: Arc<Store>) -> Router {
    Router::new()
        .route(
            "/status",
            get(|| async { Html(include_str!("status.html")) }),
        )
        .route("/api/status", get(occupancy))
        .with_state(rooms)
}

/// Every room and how many are in it; `503` with the reason when the rooms cannot be read (a
/// cluster's Redis out of reach).
async fn occupancy(State(rooms): State<Arc<Store>>) -> Response {
    let no_store = [(header::CACHE_CONTROL, "no-store")];
    match rooms.occupancy().await {
        Ok(rooms) => (
            no_store,
            Json(serde_json::json!({ "rooms": rooms, "max_rooms": MAX_ROOMS })),
        )
            .into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            no_store,
            Json(serde_json::json!({ "error": reason })),
        )
            .into_response(),
    }
}
