//! Direct-message routes: send, read, edit, delete, conversations, history, read markers and
//! unread counts.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::{self, message_id, user_id, Auth, Body, LimitQuery};
use super::state::AppState;
use crate::id::MessageId;
use crate::messaging::model::Page;
use crate::messaging::store::Appended;

/// The direct-message routes (merged into the API router).
pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/messages", post(send))
        .route(
            "/api/v1/messages/{id}",
            get(get_message).patch(edit).delete(delete),
        )
        .route("/api/v1/conversations", get(conversations))
        .route("/api/v1/conversations/{peer}/messages", get(history))
        .route("/api/v1/conversations/{peer}/read", post(mark_read))
        .route("/api/v1/unread", get(unread))
}

#[derive(Debug, Deserialize)]
struct SendBody {
    to: String,
    content: String,
    #[serde(default)]
    client_id: Option<String>,
}

async fn send(
    State(st): State<Arc<AppState>>,
    Auth(me): Auth,
    Body(b): Body<SendBody>,
) -> Result<Response, ApiError> {
    let to = user_id(&b.to)?;
    let appended = st.messaging.send(me, to, b.content, b.client_id).await?;
    let status = match appended {
        Appended::Created(_) => StatusCode::CREATED,
        Appended::Duplicate(_) => StatusCode::OK,
    };
    Ok((status, Json(json!({ "message": appended.message() }))).into_response())
}

async fn get_message(
    State(st): State<Arc<AppState>>,
    Auth(me): Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let m = st.messaging.get(me, message_id(&id)?).await?;
    Ok(Json(json!({ "message": m })))
}

#[derive(Debug, Deserialize)]
struct EditBody {
    content: String,
}

async fn edit(
    State(st): State<Arc<AppState>>,
    Auth(me): Auth,
    Path(id): Path<String>,
    Body(b): Body<EditBody>,
) -> Result<Json<Value>, ApiError> {
    let id = message_id(&id)?;
    let m = st
        .messaging
        .edit(me, id, b.content, crate::now_ms())
        .await?;
    Ok(Json(json!({ "message": m })))
}

async fn delete(
    State(st): State<Arc<AppState>>,
    Auth(me): Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let m = st
        .messaging
        .delete(me, message_id(&id)?, crate::now_ms())
        .await?;
    Ok(Json(json!({ "message": m })))
}

async fn conversations(
    State(st): State<Arc<AppState>>,
    Auth(me): Auth,
    q: Result<Query<LimitQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = extract::query(q)?;
    let limit = q.limit.unwrap_or(50).clamp(1, 100);
    let list = st.messaging.conversations(me, limit).await?;
    Ok(Json(json!({ "conversations": list })))
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    #[serde(default)]
    before: Option<String>,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

async fn history(
    State(st): State<Arc<AppState>>,
    Auth(me): Auth,
    Path(peer): Path<String>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = extract::query(q)?;
    let peer = user_id(&peer)?;
    let limit = extract::limit(q.limit, 50, 100)?;
    let page = Page {
        before: q.before.as_deref().map(message_id).transpose()?,
        after: q.after.as_deref().map(message_id).transpose()?,
        limit,
    };
    let messages = st.messaging.history(me, peer, page).await?;
    let next = if messages.len() == limit {
        messages.last().map(|m| m.id.to_string())
    } else {
        None
    };
    Ok(Json(json!({ "messages": messages, "next_before": next })))
}

#[derive(Debug, Deserialize)]
struct ReadBody {
    up_to: MessageId,
}

async fn mark_read(
    State(st): State<Arc<AppState>>,
    Auth(me): Auth,
    Path(peer): Path<String>,
    Body(b): Body<ReadBody>,
) -> Result<Json<Value>, ApiError> {
    let peer = user_id(&peer)?;
    let marker = st.messaging.mark_read(me, peer, b.up_to).await?;
    Ok(Json(json!({ "read_up_to": marker })))
}

async fn unread(State(st): State<Arc<AppState>>, Auth(me): Auth) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        serde_json::to_value(st.messaging.unread(me).await?).unwrap_or_default(),
    ))
}
