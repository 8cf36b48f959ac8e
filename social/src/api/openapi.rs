//! The OpenAPI 3.1 document served at `/api/v1/openapi.json`.

use axum::Json;
use serde_json::{json, Value};

fn op(summary: &str, body: Option<&str>, params: &[(&str, &str, &str)], ok: &str) -> Value {
    let mut o = json!({
        "summary": summary,
        "security": [{"bearer": []}],
        "parameters": params.iter().map(|(name, at, desc)| json!({
            "name": name, "in": at, "required": *at == "path", "description": desc,
            "schema": {"type": "string"}
        })).collect::<Vec<_>>(),
        "responses": {
            ok: {"description": "success", "content": {"application/json": {"schema": {"type": "object"}}}},
            "400": {"$ref": "#/components/responses/Error"},
            "401": {"$ref": "#/components/responses/Error"},
            "404": {"$ref": "#/components/responses/Error"},
            "429": {"$ref": "#/components/responses/Error"}
        }
    });
    if let Some(schema) = body {
        o["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
    }
    o
}

/// The document.
pub async fn document() -> Json<Value> {
    let peer = ("peer", "path", "the other participant's user id");
    let id = ("id", "path", "message id (decimal string)");
    let room = ("room", "path", "room name (the stream name)");
    Json(json!({
        "openapi": "3.1.0",
        "info": {"title": "zerocast social API", "version": "1"},
        "servers": [{"url": "/"}],
        "paths": {
            "/api/v1/messages": {"post": op("Send a direct message (idempotent by client_id: a repeat returns 200 and the same message)", Some("SendMessage"), &[], "201")},
            "/api/v1/messages/{id}": {
                "get": op("One message of one of my conversations", None, &[id], "200"),
                "patch": op("Edit my own message", Some("EditMessage"), &[id], "200"),
                "delete": op("Delete my own message (a tombstone stays)", None, &[id], "200")
            },
            "/api/v1/conversations": {"get": op("My conversations, most recent first, with unread counts", None, &[("limit", "query", "1-100")], "200")},
            "/api/v1/conversations/{peer}/messages": {"get": op("History with a peer, newest first; page with before=next_before", None, &[peer, ("before", "query", "message id"), ("after", "query", "message id"), ("limit", "query", "1-100, default 50")], "200")},
            "/api/v1/conversations/{peer}/read": {"post": op("Mark read up to a message (markers only move forward)", Some("MarkRead"), &[peer], "200")},
            "/api/v1/unread": {"get": op("Unread counts, total and per conversation", None, &[], "200")},
            "/api/v1/rooms/{room}": {"get": op("Room settings", None, &[room], "200")},
            "/api/v1/rooms/{room}/messages": {
                "get": op("The room's history, oldest first; with since=<message id>, the messages after it (page with since=next_since)", None, &[room, ("since", "query", "message id"), ("limit", "query", "1-1000, default 100; with since only")], "200"),
                "post": op("Post to a live-chat room", Some("ChatMessage"), &[room], "201")
            },
            "/api/v1/rooms/{room}/slow-mode": {"put": op("Set slow mode (owner only)", Some("SlowMode"), &[room], "200")},
            "/api/v1/rooms/{room}/moderators/{user}": {
                "put": op("Name a moderator (owner only)", None, &[room, ("user", "path", "user id")], "200"),
                "delete": op("Remove a moderator (owner only)", None, &[room, ("user", "path", "user id")], "200")
            },
            "/api/v1/rooms/{room}/bans": {"post": op("Ban or time out a user (owner or moderator)", Some("Ban"), &[room], "204")},
            "/api/v1/rooms/{room}/bans/{user}": {"delete": op("Lift a ban (owner or moderator)", None, &[room, ("user", "path", "user id")], "204")},
            "/api/v1/streams": {
                "get": op("My reserved stream names", None, &[], "200"),
                "post": op("Reserve a stream name; answers its publish key once", Some("NewStream"), &[], "201")
            },
            "/api/v1/streams/{name}": {
                "get": op("A stream's owner, privacy and live state", None, &[("name", "path", "stream name")], "200"),
                "patch": op("Change privacy or slow mode (owner only)", Some("StreamSettings"), &[("name", "path", "stream name")], "200"),
                "delete": op("Release the name (owner only)", None, &[("name", "path", "stream name")], "204")
            },
            "/api/v1/streams/{name}/key": {"post": op("Rotate the publish key (owner only); the old key stops at once", None, &[("name", "path", "stream name")], "200")},
            "/api/v1/streams/{name}/playback-token": {"post": op("Mint a playback token for a private stream (owner only)", Some("PlaybackTokenRequest"), &[("name", "path", "stream name")], "200")},
            "/api/v1/ws": {"get": {
                "summary": "WebSocket: pushes, sends, chat. Token as access_token query parameter or Authorization header; since=<message id> replays what was missed. Without a token the socket is anonymous and may only read rooms. Protocol: docs/social.md",
                "parameters": [
                    {"name": "access_token", "in": "query", "schema": {"type": "string"}},
                    {"name": "since", "in": "query", "schema": {"type": "string"}}
                ],
                "responses": {"101": {"description": "switching protocols"}, "401": {"$ref": "#/components/responses/Error", "description": "an invalid or expired token"}}
            }},
            "/api/v1/users/me/profile": {"put": op("Create or update my profile", Some("Profile"), &[], "200")},
            "/api/v1/users/me/following/{id}": {
                "put": op("Follow a user (idempotent; following yourself is 400)", None, &[("id", "path", "user id")], "200"),
                "delete": op("Unfollow a user (idempotent)", None, &[("id", "path", "user id")], "200")
            },
            "/api/v1/users/{id}": {"get": op("A user's profile and counts", None, &[("id", "path", "user id")], "200")},
            "/api/v1/users/{id}/counts": {"get": op("Follower and following counts", None, &[("id", "path", "user id")], "200")},
            "/api/v1/users/{id}/followers": {"get": op("Followers, newest first; page with cursor=next_cursor", None, &[("id", "path", "user id"), ("cursor", "query", "next_cursor of the previous page"), ("limit", "query", "1-100, default 50")], "200")},
            "/api/v1/users/{id}/following": {"get": op("Accounts the user follows, newest first", None, &[("id", "path", "user id"), ("cursor", "query", "next_cursor of the previous page"), ("limit", "query", "1-100, default 50")], "200")},
            "/api/v1/users/{id}/following/{other}": {"get": op("Whether the user follows other", None, &[("id", "path", "user id"), ("other", "path", "user id")], "200")},
            "/api/v1/users/{id}/friends": {"get": op("Accounts followed in both directions", None, &[("id", "path", "user id"), ("cursor", "query", "next_cursor"), ("limit", "query", "1-100")], "200")},
            "/api/v1/users/{id}/common-following/{other}": {"get": op("Accounts both users follow, most followed first", None, &[("id", "path", "user id"), ("other", "path", "user id"), ("limit", "query", "1-100, default 20")], "200")},
            "/api/v1/recommendations": {"get": op("Accounts to follow: friends of friends ranked by distinct paths, with the reason; popular accounts for users who follow nobody", None, &[("limit", "query", "1-100, default 20")], "200")},
            "/api/v1/health": {"get": {"summary": "Liveness", "responses": {"200": {"description": "ok"}}}}
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT (HS256, sub = user UUID)"}},
            "responses": {"Error": {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}},
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                    "code": {"type": "string"}, "message": {"type": "string"}, "retry_after_ms": {"type": "integer"}}}}},
                "SendMessage": {"type": "object", "required": ["to", "content"], "properties": {
                    "to": {"type": "string", "format": "uuid"},
                    "content": {"type": "string", "maxLength": 4096, "description": "UTF-8, at most 4096 bytes"},
                    "client_id": {"type": "string", "maxLength": 128}}},
                "EditMessage": {"type": "object", "required": ["content"], "properties": {"content": {"type": "string"}}},
                "MarkRead": {"type": "object", "required": ["up_to"], "properties": {"up_to": {"type": "string"}}},
                "ChatMessage": {"type": "object", "required": ["content"], "properties": {"content": {"type": "string"}, "client_id": {"type": "string", "minLength": 1, "maxLength": 128}}},
                "Profile": {"type": "object", "required": ["display_name"], "properties": {
                    "display_name": {"type": "string", "minLength": 1, "maxLength": 64},
                    "avatar_url": {"type": "string", "format": "uri", "maxLength": 512},
                    "bio": {"type": "string", "maxLength": 512}}},
                "SlowMode": {"type": "object", "required": ["seconds"], "properties": {"seconds": {"type": "integer", "minimum": 0, "maximum": 3600}}},
                "NewStream": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string", "pattern": "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$"}, "private": {"type": "boolean"}}},
                "StreamSettings": {"type": "object", "properties": {"private": {"type": "boolean"}, "slow_mode_secs": {"type": "integer", "minimum": 0, "maximum": 3600}}},
                "PlaybackTokenRequest": {"type": "object", "properties": {"ttl_secs": {"type": "integer", "minimum": 1, "maximum": 604800}}},
                "Ban": {"type": "object", "required": ["user"], "properties": {"user": {"type": "string", "format": "uuid"}, "seconds": {"type": "integer", "description": "a timeout; omit for a ban"}}},
                "Message": {"type": "object", "properties": {
                    "id": {"type": "string"}, "conversation": {"type": "string"}, "from": {"type": "string"},
                    "to": {"type": "string"}, "content": {"type": "string"}, "client_id": {"type": "string"},
                    "edited_at": {"type": "integer"}, "deleted": {"type": "boolean"}}}
            }
        }
    }))
}
