//! Stream routes: reserve a name and get its publish key, list, rotate, configure, delete, and
//! mint playback tokens for private streams.
//!
//! A key is shown once, in the answer that issues it (create, rotate); the store keeps only
//! its hash. The OBS stream key is `NAME?key=KEY`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::{Auth, Body};
use super::state::AppState;
use crate::channels::secrets::fingerprint;
use crate::channels::service::Issued;
use crate::channels::Channel;

/// The stream routes (merged into the API router).
pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/streams", get(list).post(create))
        .route(
            "/api/v1/streams/{name}",
            get(show).patch(configure).delete(remove),
        )
        .route("/api/v1/streams/{name}/key", post(rotate))
        .route(
            "/api/v1/streams/{name}/playback-token",
            post(playback_token),
        )
}

/// A channel as its owner sees it (never the key or its hash).
fn owned_view(c: &Channel) -> Value {
    json!({
        "name": c.name,
        "owner": c.owner,
        "private": c.private,
        "key_fingerprint": fingerprint(&c.key_hash),
        "key_issued_at": c.key_issued_at,
        "created_at": c.created_at,
        "slow_mode_secs": c.slow_mode_secs,
        "moderators": c.moderators,
    })
}

fn issued_view(i: &Issued) -> Value {
    json!({
        "stream": owned_view(&i.channel),
        "key": i.key,
        "obs_stream_key": format!("{}?key={}", i.channel.name, i.key),
    })
}

#[derive(Debug, Deserialize)]
struct CreateBody {
    name: String,
    #[serde(default)]
    private: bool,
}

async fn create(
    State(st): State<Arc<AppState>>,
    Auth(me): Auth,
    Body(b): Body<CreateBody>,
) -> Result<Response, ApiError> {
    let issued = st
        .channels
        .create(me, &b.name, b.private, crate::now_ms())
        .await?;
    st.chat.announce(&b.name).await;
    tracing::info!(stream = %b.name, owner = %me.0, "stream name reserved");
    Ok((StatusCode::CREATED, Json(issued_view(&issued))).into_response())
}

async fn list(State(st): State<Arc<AppState>>, Auth(me): Auth) -> Result<Json<Value>, ApiError> {
    let streams: Vec<Value> = st.channels.list(me).await?.iter().map(owned_view).collect();
    Ok(Json(json!({ "streams": streams })))
}

async fn show(
    State(st): State<Arc<AppState>>,
    Auth(me): Auth,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let c = st
        .channels
        .get(&name)
        .await?
        .ok_or_else(|| ApiError::not_found("no such stream"))?;
    let live = st.chat.is_live(&name);
    // Anyone signed in sees who owns a name; only the owner sees its settings.
    let mut v = if c.owner == me {
        owned_view(&c)
    } else {
        json!({ "name": c.name, "owner": c.owner, "private": c.private })
    };
    v["live"] = json!(live);
    Ok(Json(json!({ "stream": v })))
}

#[derive(Debug, Deserialize)]
struct ConfigureBody {
    #[serde(default)]
    private: Option<bool>,
    #[serde(default)]
    slow_mode_secs: Option<u64>,
}

async fn configure(
    State(st): State<Arc<AppState>>,
    Auth(me): Auth,
    Path(name): Path<String>,
    Body(b): Body<ConfigureBody>,
) -> Result<Json<Value>, ApiError> {
    let c = st
        .channels
        .configure(me, &name, b.private, b.slow_mode_secs)
        .await?;
    st.chat.announce(&name).await;
    Ok(Json(json!({ "stream": owned_view(&c) })))
}

async fn remove(
    State(st): State<Arc<AppState>>,
    Auth(me): Auth,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    st.channels.delete(me, &name).await?;
    st.chat.announce(&name).await;
    tracing::info!(stream = %name, owner = %me.0, "stream name released");
    Ok(StatusCode::NO_CONTENT)
}

async fn rotate(
    State(st): State<Arc<AppState>>,
    Auth(me): Auth,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let issued = st.channels.rotate(me, &name, crate::now_ms()).await?;
    tracing::info!(stream = %name, "stream key rotated");
    Ok(Json(issued_view(&issued)))
}

#[derive(Debug, Deserialize)]
struct TokenBody {
    /// Lifetime, seconds (default one hour).
    #[serde(default)]
    ttl_secs: Option<u64>,
}

async fn playback_token(
    State(st): State<Arc<AppState>>,
    Auth(me): Auth,
    Path(name): Path<String>,
    Body(b): Body<TokenBody>,
) -> Result<Json<Value>, ApiError> {
    let now = crate::now_ms() / 1000;
    let (token, exp) = st
        .channels
        .playback_token(me, &name, b.ttl_secs.unwrap_or(3600), now)
        .await?;
    Ok(Json(json!({
        "token": token,
        "expires_at": exp,
        "query": format!("token={token}"),
    })))
}
