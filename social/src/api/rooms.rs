//! Live-chat room routes: settings, history, posting, and moderation (slow mode by the owner;
//! moderators named by the owner; bans and timeouts by either).
//!
//! A room exists for a reserved stream name (its owner is the name's owner) or a live stream;
//! reading a room never creates one.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::{self, message_id, user_id, Auth, Body};
use super::state::AppState;

/// The room routes (merged into the API router).
pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/rooms/{room}", get(room_settings))
        .route(
            "/api/v1/rooms/{room}/messages",
            get(room_history).post(room_post),
        )
        .route("/api/v1/rooms/{room}/slow-mode", put(room_slow_mode))
        .route(
            "/api/v1/rooms/{room}/moderators/{user}",
            put(add_moderator).delete(remove_moderator),
        )
        .route("/api/v1/rooms/{room}/bans", post(room_ban))
        .route("/api/v1/rooms/{room}/bans/{user}", delete(room_unban))
}

async fn room_settings(
    State(st): State<Arc<AppState>>,
    Auth(_): Auth,
    Path(room): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let settings = st.chat.settings(&room).await?;
    let live = st.chat.is_live(&room);
    Ok(Json(
        json!({ "room": room, "settings": settings, "live": live }),
    ))
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    /// Only messages after this id (a cursor: the last id of the previous page).
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

/// Without `since`: the room's history (its newest messages). With `since`: the messages after
/// that id, oldest first, at most `limit` (default 100, at most 1000); `next_since` is the
/// cursor for the next page when this one is full.
async fn room_history(
    State(st): State<Arc<AppState>>,
    Auth(_): Auth,
    Path(room): Path<String>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = extract::query(q)?;
    let Some(since) = q.since.as_deref() else {
        if q.limit.is_some() {
            return Err(ApiError::bad(
                "invalid_query",
                "limit applies to since pages; without since the whole history is returned",
            ));
        }
        let messages = st.chat.history(&room).await?;
        return Ok(Json(json!({ "room": room, "messages": messages })));
    };
    let after = message_id(since)?;
    let limit = extract::limit(q.limit, 100, crate::chat::store::READ_MAX)?;
    let messages = st.chat.since(&room, after, limit).await?;
    let next = if messages.len() == limit {
        messages.last().map(|m| m.id.to_string())
    } else {
        None
    };
    Ok(Json(
        json!({ "room": room, "messages": messages, "next_since": next }),
    ))
}

#[derive(Debug, Deserialize)]
struct ChatBody {
    content: String,
    /// Idempotency key: a repeated post with the same key returns the first message.
    #[serde(default)]
    client_id: Option<String>,
}

async fn room_post(
    State(st): State<Arc<AppState>>,
    Auth(me): Auth,
    Path(room): Path<String>,
    Body(b): Body<ChatBody>,
) -> Result<Response, ApiError> {
    let a = st
        .chat
        .post(me, &room, b.content, b.client_id, crate::now_ms())
        .await?;
    // As for direct messages: 201 when stored now, 200 with the first message for a repeat.
    let status = if a.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(json!({ "message": a.message }))).into_response())
}

#[derive(Debug, Deserialize)]
struct SlowBody {
    seconds: u64,
}

async fn room_slow_mode(
    State(st): State<Arc<AppState>>,
    Auth(me): Auth,
    Path(room): Path<String>,
    Body(b): Body<SlowBody>,
) -> Result<Json<Value>, ApiError> {
    st.chat.set_slow_mode(&room, me, b.seconds).await?;
    let settings = st.chat.settings(&room).await?;
    Ok(Json(json!({ "room": room, "settings": settings })))
}

async fn add_moderator(
    State(st): State<Arc<AppState>>,
    Auth(me): Auth,
    Path((room, user)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    st.chat
        .set_moderator(&room, me, user_id(&user)?, true)
        .await?;
    let settings = st.chat.settings(&room).await?;
    Ok(Json(json!({ "room": room, "settings": settings })))
}

async fn remove_moderator(
    State(st): State<Arc<AppState>>,
    Auth(me): Auth,
    Path((room, user)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    st.chat
        .set_moderator(&room, me, user_id(&user)?, false)
        .await?;
    let settings = st.chat.settings(&room).await?;
    Ok(Json(json!({ "room": room, "settings": settings })))
}

#[derive(Debug, Deserialize)]
struct BanBody {
    user: String,
    /// A timeout of this many seconds; absent for a ban.
    #[serde(default)]
    seconds: Option<u64>,
}

async fn room_ban(
    State(st): State<Arc<AppState>>,
    Auth(me): Auth,
    Path(room): Path<String>,
    Body(b): Body<BanBody>,
) -> Result<StatusCode, ApiError> {
    let user = user_id(&b.user)?;
    st.chat
        .ban(&room, me, user, b.seconds, crate::now_ms())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn room_unban(
    State(st): State<Arc<AppState>>,
    Auth(me): Auth,
    Path((room, user)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    st.chat.unban(&room, me, user_id(&user)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
