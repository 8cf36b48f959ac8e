//! The follow-graph routes under `/api/v1`: profiles, follow/unfollow, lists, counts, friends,
//! common followings and recommendations.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::{self, user_id, Auth, Body, LimitQuery};
use super::state::AppState;
use crate::graph::{
    service, Counts, Cursor, Edge, GraphError, PageRenderer, Profile, RecommendLimits, Side,
};
use crate::id::UserId;

/// Most edges or users one request returns.
const MAX_LIMIT: usize = 100;

/// The graph routes (merged into the API router).
pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/users/me/profile", put(put_profile))
        .route(
            "/api/v1/users/me/following/{id}",
            put(follow).delete(unfollow),
        )
        .route("/api/v1/users/{id}", get(user))
        .route("/api/v1/users/{id}/counts", get(counts))
        .route("/api/v1/users/{id}/followers", get(followers))
        .route("/api/v1/users/{id}/following", get(following))
        .route("/api/v1/users/{id}/following/{other}", get(is_following))
        .route("/api/v1/users/{id}/friends", get(friends))
        .route(
            "/api/v1/users/{id}/common-following/{other}",
            get(common_following),
        )
        .route("/api/v1/recommendations", get(recommendations))
}

#[derive(Debug, Deserialize)]
struct ProfileBody {
    display_name: String,
    #[serde(default)]
    avatar_url: Option<String>,
    #[serde(default)]
    bio: Option<String>,
}

async fn put_profile(
    State(st): State<Arc<AppState>>,
    Auth(me): Auth,
    Body(b): Body<ProfileBody>,
) -> Result<Json<Value>, ApiError> {
    let p = service::profile(me, &b.display_name, b.avatar_url, b.bio, crate::now_ms())?;
    st.graph.put_profile(p.clone()).await?;
    Ok(Json(json!({ "profile": p })))
}

async fn user(
    State(st): State<Arc<AppState>>,
    Auth(_): Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = user_id(&id)?;
    let profile = st.graph.profiles(&[id]).await?.pop().flatten();
    let Some(profile) = profile else {
        return Err(ApiError::not_found("no such user"));
    };
    let counts = st.graph.counts(id).await?;
    Ok(Json(json!({ "profile": profile, "counts": counts })))
}

async fn follow(
    State(st): State<Arc<AppState>>,
    Auth(me): Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let to = user_id(&id)?;
    let created = st.graph.follow(me, to, crate::now_ms()).await?;
    if created {
        // Its event is in the outbox.
        st.graph_relay_wake.notify_one();
    }
    Ok(Json(json!({ "following": true, "created": created })))
}

async fn unfollow(
    State(st): State<Arc<AppState>>,
    Auth(me): Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let to = user_id(&id)?;
    if to == me {
        return Err(GraphError::SelfFollow.into());
    }
    let removed = st.graph.unfollow(me, to).await?;
    if removed {
        st.graph_relay_wake.notify_one();
    }
    Ok(Json(json!({ "following": false, "removed": removed })))
}

async fn counts(
    State(st): State<Arc<AppState>>,
    Auth(_): Auth,
    Path(id): Path<String>,
) -> Result<Json<Counts>, ApiError> {
    let c = st.graph.counts(user_id(&id)?).await?;
    // `Counts` serialises as `{"followers":..,"following":..}`, in the order `json!` wrote.
    Ok(Json(c))
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

fn page(q: Result<Query<PageQuery>, QueryRejection>) -> Result<(Option<Cursor>, usize), ApiError> {
    let q = extract::query(q)?;
    let limit = extract::limit(q.limit, 50, MAX_LIMIT)?;
    let cursor = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(Cursor::decode(c).ok_or_else(|| {
            ApiError::bad("invalid_cursor", "cursor is not one this API returned")
        })?),
    };
    Ok((cursor, limit))
}

/// A page of edges with the profiles of its accounts. Fields in name order, as `json!` writes
/// them.
#[derive(Debug, Serialize)]
struct EdgePage<'a> {
    next_cursor: Option<String>,
    users: Vec<EdgeUser<'a>>,
}

#[derive(Debug, Serialize)]
struct EdgeUser<'a> {
    id: UserId,
    profile: Option<&'a Profile>,
    since: u64,
}

/// The JSON answer for a page of `edges` (with the profile of each) asked with `limit`: a
/// [`PageRenderer`], so a function of its arguments alone.
fn render_edge_page(edges: &[Edge], profiles: &[Option<Arc<Profile>>], limit: usize) -> Bytes {
    let next_cursor = if edges.len() == limit {
        edges.last().map(|e| Cursor::after(e).encode())
    } else {
        None
    };
    let users = edges
        .iter()
        .zip(profiles)
        .map(|(e, profile)| EdgeUser {
            id: e.user,
            profile: profile.as_deref(),
            since: e.since,
        })
        .collect();
    // About what a profile of the load test takes, so most pages are written without growing.
    let mut out = Vec::with_capacity(64 + 200 * edges.len());
    // Plain data into a Vec: cannot fail.
    let _ = serde_json::to_writer(&mut out, &EdgePage { next_cursor, users });
    Bytes::from(out)
}

/// A JSON body written before.
fn json_bytes(body: Bytes) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

async fn followers(
    State(st): State<Arc<AppState>>,
    Auth(_): Auth,
    Path(id): Path<String>,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (cursor, limit) = page(q)?;
    let user = user_id(&id)?;
    let render: &PageRenderer = &render_edge_page;
    let body = st
        .graph
        .render_page(Side::Followers, user, cursor, limit, render)
        .await?;
    Ok(json_bytes(body))
}

async fn following(
    State(st): State<Arc<AppState>>,
    Auth(_): Auth,
    Path(id): Path<String>,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (cursor, limit) = page(q)?;
    let user = user_id(&id)?;
    let render: &PageRenderer = &render_edge_page;
    let body = st
        .graph
        .render_page(Side::Following, user, cursor, limit, render)
        .await?;
    Ok(json_bytes(body))
}

async fn friends(
    State(st): State<Arc<AppState>>,
    Auth(_): Auth,
    Path(id): Path<String>,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (cursor, limit) = page(q)?;
    let edges = st.graph.friends(user_id(&id)?, cursor, limit).await?;
    let ids: Vec<UserId> = edges.iter().map(|e| e.user).collect();
    let profiles = st.graph.shared_profiles(&ids).await?;
    Ok(json_bytes(render_edge_page(&edges, &profiles, limit)))
}

async fn is_following(
    State(st): State<Arc<AppState>>,
    Auth(_): Auth,
    Path((a, b)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let f = st.graph.is_following(user_id(&a)?, user_id(&b)?).await?;
    Ok(Json(json!({ "following": f })))
}

fn limit(q: Result<Query<LimitQuery>, QueryRejection>) -> Result<usize, ApiError> {
    extract::limit(extract::query(q)?.limit, 20, MAX_LIMIT)
}

async fn common_following(
    State(st): State<Arc<AppState>>,
    Auth(_): Auth,
    Path((a, b)): Path<(String, String)>,
    q: Result<Query<LimitQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let limit = limit(q)?;
    let ids = st
        .graph
        .common_following(user_id(&a)?, user_id(&b)?, limit)
        .await?;
    let profiles = st.graph.profiles(&ids).await?;
    let users: Vec<Value> = ids
        .iter()
        .zip(profiles)
        .map(|(id, p)| json!({ "id": id, "profile": p }))
        .collect();
    Ok(Json(json!({ "users": users })))
}

async fn recommendations(
    State(st): State<Arc<AppState>>,
    Auth(me): Auth,
    q: Result<Query<LimitQuery>, QueryRejection>,
) -> Result<Json<Recommended>, ApiError> {
    let limit = limit(q)?;
    let recs = st
        .graph
        .recommendations(me, limit, RecommendLimits::default())
        .await?;
    let ids: Vec<UserId> = recs.iter().map(|r| r.user).collect();
    let profiles = st.graph.shared_profiles(&ids).await?;
    let recommendations = recs
        .iter()
        .zip(profiles)
        .map(|(r, profile)| RecommendedUser {
            followers: r.followers,
            id: r.user,
            paths: r.paths,
            profile,
            reason: match r.paths {
                0 => "popular on zerocast".to_owned(),
                1 => "followed by 1 person you follow".to_owned(),
                n => format!("followed by {n} people you follow"),
            },
        })
        .collect();
    Ok(Json(Recommended { recommendations }))
}

/// The recommendations answer. Fields in name order, as `json!` writes them.
#[derive(Debug, Serialize)]
struct Recommended {
    recommendations: Vec<RecommendedUser>,
}

#[derive(Debug, Serialize)]
struct RecommendedUser {
    followers: u64,
    id: UserId,
    paths: u64,
    profile: Option<Arc<Profile>>,
    reason: String,
}
