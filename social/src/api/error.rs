//! [`ApiError`]: how every refusal and failure reaches a client, a status and
//! `{"error": {"code", "message"}}` (plus `retry_after_ms` and `Retry-After` when waiting
//! helps), and the mapping from each domain error to it.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::auth::AuthError;
use crate::channels::ChannelError;
use crate::chat::rooms::ChatError;
use crate::chat::service::PostError;
use crate::graph::service::ProfileError;
use crate::graph::GraphError;
use crate::limits::LimitError;
use crate::messaging::service::MessagingError;
use crate::messaging::store::StoreError;

/// An error as the API returns it.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after_ms: Option<u64>,
}

impl ApiError {
    /// An error with this status, machine code and human message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// A 400 with this code and message.
    pub fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// A 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// How long the client should wait before trying again, when the error says.
    pub fn retry_after_ms(&self) -> Option<u64> {
        self.retry_after_ms
    }

    fn retry_after(mut self, ms: u64) -> Self {
        self.retry_after_ms = Some(ms);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": { "code": self.code, "message": self.message } });
        if let Some(ms) = self.retry_after_ms {
            body["error"]["retry_after_ms"] = json!(ms);
        }
        let mut r = (self.status, Json(body)).into_response();
        if let Some(ms) = self.retry_after_ms {
            if let Ok(v) = header::HeaderValue::from_str(&ms.div_ceil(1000).to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        r
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::not_found("no such message"),
            StoreError::Forbidden => Self::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "only the sender may change a message",
            ),
            other => {
                tracing::error!("store: {other}");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage",
                    "storage unavailable",
                )
            }
        }
    }
}

impl From<LimitError> for ApiError {
    fn from(e: LimitError) -> Self {
        match e {
            LimitError::Empty => Self::bad("empty_message", e.to_string()),
            LimitError::TooLarge { .. } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "message_too_large",
                e.to_string(),
            ),
            LimitError::RateLimited { retry_after_ms } => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", e.to_string())
                    .retry_after(retry_after_ms)
            }
        }
    }
}

impl From<MessagingError> for ApiError {
    fn from(e: MessagingError) -> Self {
        match e {
            MessagingError::SelfRecipient => Self::bad("invalid_recipient", e.to_string()),
            MessagingError::BadClientId => Self::bad("invalid_client_id", e.to_string()),
            MessagingError::NotInConversation => Self::not_found(e.to_string()),
            MessagingError::Limit(e) => e.into(),
            MessagingError::Store(e) => e.into(),
        }
    }
}

impl From<ChatError> for ApiError {
    fn from(e: ChatError) -> Self {
        let (status, code) = match e {
            ChatError::SlowMode(_) => (StatusCode::TOO_MANY_REQUESTS, "slow_mode"),
            ChatError::Banned(_) => (StatusCode::FORBIDDEN, "banned"),
            ChatError::BadName => (StatusCode::BAD_REQUEST, "bad_room"),
            ChatError::NoSuchRoom => (StatusCode::NOT_FOUND, "no_such_room"),
            ChatError::BadClientId => (StatusCode::BAD_REQUEST, "invalid_client_id"),
        };
        let err = Self::new(status, code, e.to_string());
        match e {
            ChatError::SlowMode(ms) => err.retry_after(ms),
            _ => err,
        }
    }
}

impl From<ChannelError> for ApiError {
    fn from(e: ChannelError) -> Self {
        let (status, code) = match &e {
            ChannelError::BadName => (StatusCode::BAD_REQUEST, "bad_name"),
            ChannelError::Taken => (StatusCode::CONFLICT, "name_taken"),
            ChannelError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ChannelError::Forbidden => (StatusCode::FORBIDDEN, "not_owner"),
            ChannelError::TooMany(_) => (StatusCode::FORBIDDEN, "too_many_streams"),
            ChannelError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
            ChannelError::Backend(m) => {
                tracing::error!("channel store: {m}");
                (StatusCode::SERVICE_UNAVAILABLE, "store")
            }
        };
        Self::new(status, code, e.to_string())
    }
}

impl From<PostError> for ApiError {
    fn from(e: PostError) -> Self {
        match e {
            PostError::Limit(e) => e.into(),
            PostError::Room(e) => e.into(),
            PostError::Channel(e) => e.into(),
            PostError::Bus(e) => Self::new(StatusCode::SERVICE_UNAVAILABLE, "bus", e.to_string()),
            PostError::Store(e) => e.into(),
        }
    }
}

impl From<GraphError> for ApiError {
    fn from(e: GraphError) -> Self {
        match e {
            GraphError::SelfFollow => Self::bad("self_follow", "cannot follow yourself"),
            other => {
                tracing::error!("graph: {other}");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "graph",
                    "graph storage unavailable",
                )
            }
        }
    }
}

impl From<ProfileError> for ApiError {
    fn from(e: ProfileError) -> Self {
        let code = match e {
            ProfileError::DisplayName => "invalid_display_name",
            ProfileError::AvatarUrl => "invalid_avatar_url",
            ProfileError::Bio => "invalid_bio",
        };
        Self::bad(code, e.to_string())
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let code = match e {
            AuthError::TokenInQuery => "token_in_query",
            _ => "unauthorized",
        };
        Self::new(StatusCode::UNAUTHORIZED, code, e.to_string())
    }
}
