//! Extractors and parsers shared by the handlers: the authenticated caller ([`Auth`]), JSON
//! bodies and queries whose rejections are [`ApiError`]s, and ids in paths.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::error::ApiError;
use super::state::AppState;
use crate::auth::AuthError;
use crate::id::{MessageId, UserId};

/// The authenticated caller.
#[derive(Debug, Clone, Copy)]
pub struct Auth(pub UserId);

/// The bearer token of a request's `Authorization: Bearer` header.
///
/// Only the WebSocket upgrade also reads an `access_token` query parameter (browsers cannot
/// set headers on WebSocket requests); a REST request carrying one is refused with 401
/// ([`AuthError::TokenInQuery`]), since URLs end up in access logs and browser history.
pub fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())?;
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .map(|t| t.trim().to_owned())
}

/// Whether a query string carries an `access_token` parameter.
pub fn has_query_token(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&')
            .any(|kv| kv.split('=').next() == Some("access_token"))
    })
}

impl FromRequestParts<Arc<AppState>> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &Arc<AppState>) -> Result<Self, ApiError> {
        if has_query_token(parts.uri.query()) {
            return Err(AuthError::TokenInQuery.into());
        }
        let token = bearer(&parts.headers).ok_or(AuthError::Missing)?;
        Ok(Auth(st.keys.verify(&token, crate::now_ms() / 1000)?))
    }
}

/// `Json<T>` whose rejections are API errors with JSON bodies.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(JsonRejection::JsonDataError(e)) => {
                Err(ApiError::bad("invalid_body", e.body_text()))
            }
            Err(JsonRejection::JsonSyntaxError(e)) => {
                Err(ApiError::bad("invalid_json", e.body_text()))
            }
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "content_type",
                "expected Content-Type: application/json",
            )),
            Err(e) => Err(ApiError::new(e.status(), "invalid_body", e.body_text())),
        }
    }
}

/// `?limit=N`, for routes that take nothing else.
#[derive(Debug, serde::Deserialize)]
pub struct LimitQuery {
    /// At most this many items.
    #[serde(default)]
    pub limit: Option<usize>,
}

/// A query string, or a 400 `invalid_query` saying what is wrong with it.
pub fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::bad("invalid_query", e.body_text()))
}

/// A path or body field that is a user id.
pub fn user_id(s: &str) -> Result<UserId, ApiError> {
    Uuid::parse_str(s)
        .map(UserId)
        .map_err(|_| ApiError::bad("invalid_user", format!("{s:?} is not a user id")))
}

/// A path field that is a message id.
pub fn message_id(s: &str) -> Result<MessageId, ApiError> {
    s.parse()
        .map_err(|_| ApiError::bad("invalid_id", format!("{s:?} is not a message id")))
}

/// `limit` within `1..=max`, `default` when absent.
pub fn limit(limit: Option<usize>, default: usize, max: usize) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(default);
    if !(1..=max).contains(&limit) {
        return Err(ApiError::bad(
            "invalid_limit",
            format!("limit must be 1 to {max}"),
        ));
    }
    Ok(limit)
}
