//! The social API over real loopback sockets: a server instance in this process (embedded
//! store in a temp dir, in-process bus), REST over raw HTTP/1.1, WebSockets via
//! tokio-tungstenite.

#![allow(clippy::print_stdout)]

mod common;

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message as Ws;

use common::{start, user};

#[tokio::test]
async fn two_users_exchange_messages_end_to_end() {
    let api = start(|_| {}).await;
    let (a, b) = (user(), user());
    let mut wa = api.ws(a, None).await;
    let mut wb = api.ws(b, None).await;
    wa.send(json!({"type": "send", "to": b, "content": "hello b", "client_id": "c1"}))
        .await;
    let ack = wa.expect("ack").await;
    assert_eq!(ack["client_id"], "c1");
    let id = ack["id"].as_str().unwrap().to_owned();
    let got = wb.expect("message").await;
    assert_eq!(got["message"]["id"], id);
    assert_eq!(got["message"]["content"], "hello b");
    assert_eq!(got["message"]["from"], json!(a));

    // Typing reaches the peer.
    wb.send(json!({"type": "typing", "to": a})).await;
    assert_eq!(wa.expect("typing").await["from"], json!(b));

    let (s, unread) = api
        .call("GET", "/api/v1/unread", Some(&api.token(b)), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(unread["total"], 1);
    let (s, convs) = api
        .call("GET", "/api/v1/conversations", Some(&api.token(b)), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(convs["conversations"][0]["peer"], json!(a));
    assert_eq!(convs["conversations"][0]["unread"], 1);

    // B reads; A gets the receipt; B's unread count is back to 0.
    let body = json!({"up_to": id}).to_string();
    let (s, _) = api
        .call(
            "POST",
            &format!("/api/v1/conversations/{a}/read"),
            Some(&api.token(b)),
            Some(&body),
        )
        .await;
    assert_eq!(s, 200);
    let receipt = wa.expect("read").await;
    assert_eq!(receipt["reader"], json!(b));
    assert_eq!(receipt["up_to"], id);
    let (_, unread) = api
        .call("GET", "/api/v1/unread", Some(&api.token(b)), None)
        .await;
    assert_eq!(unread["total"], 0);

    // Edit and delete reach both sides; the tombstone stays visible as deleted.
    let (s, _) = api
        .call(
            "PATCH",
            &format!("/api/v1/messages/{id}"),
            Some(&api.token(a)),
            Some(r#"{"content":"hello, b"}"#),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(wb.expect("edited").await["message"]["content"], "hello, b");
    let (s, _) = api
        .call(
            "DELETE",
            &format!("/api/v1/messages/{id}"),
            Some(&api.token(b)),
            None,
        )
        .await;
    assert_eq!(s, 403, "only the sender deletes");
    let (s, _) = api
        .call(
            "DELETE",
            &format!("/api/v1/messages/{id}"),
            Some(&api.token(a)),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(wb.expect("deleted").await["message"]["deleted"], true);
    let (_, h) = api
        .call(
            "GET",
            &format!("/api/v1/conversations/{a}/messages"),
            Some(&api.token(b)),
            None,
        )
        .await;
    assert_eq!(h["messages"][0]["deleted"], true);
    assert_eq!(h["messages"][0]["content"], "");
}

#[tokio::test]
async fn history_pages_return_every_message_once_and_resends_are_idempotent() {
    let api = start(|_| {}).await;
    let (a, b) = (user(), user());
    let mut sent = Vec::new();
    for i in 0..130 {
        let (s, v) = api
            .send(a, b, &format!("m{i}"), Some(&format!("k{i}")))
            .await;
        assert_eq!(s, 201);
        sent.push(v["message"]["id"].as_str().unwrap().to_owned());
    }
    // The same client id again: the same message, 200, nothing new.
    let (s, v) = api.send(a, b, "m7 again", Some("k7")).await;
    assert_eq!(s, 200);
    assert_eq!(v["message"]["id"], sent[7]);
    assert_eq!(v["message"]["content"], "m7");

    let mut seen = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/conversations/{a}/messages?limit=25");
        if let Some(b) = &before {
            path.push_str(&format!("&before={b}"));
        }
        let (s, page) = api.call("GET", &path, Some(&api.token(b)), None).await;
        assert_eq!(s, 200);
        for m in page["messages"].as_array().unwrap() {
            seen.push(m["id"].as_str().unwrap().to_owned());
        }
        match page["next_before"].as_str() {
            Some(n) => before = Some(n.to_owned()),
            None => break,
        }
    }
    seen.reverse();
    assert_eq!(seen, sent, "every message exactly once, in order");
    let (s, _) = api
        .call(
            "GET",
            &format!("/api/v1/conversations/{a}/messages?limit=101"),
            Some(&api.token(b)),
            None,
        )
        .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn since_recovers_exactly_the_missed_messages() {
    let api = start(|_| {}).await;
    let (a, b) = (user(), user());
    let mut wb = api.ws(b, None).await;
    let (_, v) = api.send(a, b, "before", None).await;
    let last = v["message"]["id"].as_str().unwrap().to_owned();
    assert_eq!(wb.expect("message").await["message"]["id"], last);
    drop(wb); // forced disconnect
    let mut missed = Vec::new();
    for i in 0..7 {
        let (_, v) = api.send(a, b, &format!("missed {i}"), None).await;
        missed.push(v["message"]["id"].clone());
    }
    let mut wb = api.ws(b, Some(&last)).await;
    let mut replayed = Vec::new();
    loop {
        let f = wb.expect_any().await;
        match f["type"].as_str() {
            Some("message") => replayed.push(f["message"]["id"].clone()),
            Some("live") => break,
            _ => {}
        }
    }
    assert_eq!(replayed, missed);
    // Live again: a new message arrives once.
    let (_, v) = api.send(a, b, "after", None).await;
    assert_eq!(
        wb.expect("message").await["message"]["id"],
        v["message"]["id"]
    );
}

#[tokio::test]
async fn strangers_get_404_and_bad_input_gets_clear_errors() {
    let api = start(|_| {}).await;
    let (a, b, c) = (user(), user(), user());
    let (_, v) = api.send(a, b, "private", None).await;
    let id = v["message"]["id"].as_str().unwrap().to_owned();
    let tc = api.token(c);
    let (s, e) = api
        .call("GET", &format!("/api/v1/messages/{id}"), Some(&tc), None)
        .await;
    assert_eq!(s, 404, "{e}");
    assert_eq!(e["error"]["code"], "not_found");
    let (s, _) = api
        .call(
            "PATCH",
            &format!("/api/v1/messages/{id}"),
            Some(&tc),
            Some(r#"{"content":"x"}"#),
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = api
        .call("DELETE", &format!("/api/v1/messages/{id}"), Some(&tc), None)
        .await;
    assert_eq!(s, 404);
    let body = json!({"up_to": id}).to_string();
    let (s, _) = api
        .call(
            "POST",
            &format!("/api/v1/conversations/{a}/read"),
            Some(&tc),
            Some(&body),
        )
        .await;
    assert_eq!(s, 404);
    let (s, h) = api
        .call(
            "GET",
            &format!("/api/v1/conversations/{a}/messages"),
            Some(&tc),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(h["messages"], json!([]), "c's conversation with a is empty");

    // A bystander stays connected and served through all of this.
    let mut wb = api.ws(b, None).await;

    let big = "x".repeat(4097);
    let (s, e) = api.send(a, b, &big, None).await;
    assert_eq!(s, 413);
    assert_eq!(e["error"]["code"], "message_too_large");
    let (s, e) = api
        .call(
            "POST",
            "/api/v1/messages",
            Some(&api.token(a)),
            Some("{\"to\": "),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(e["error"]["code"], "invalid_json");
    let expired = api.keys.issue(a, 1_000_000, 60);
    let (s, e) = api
        .call("GET", "/api/v1/unread", Some(&expired), None)
        .await;
    assert_eq!(s, 401);
    assert_eq!(e["error"]["message"], "token expired");
    let (s, _) = api.call("GET", "/api/v1/unread", None, None).await;
    assert_eq!(s, 401);
    let url = format!("ws://{}/api/v1/ws?access_token={expired}", api.addr);
    let err = tokio_tungstenite::connect_async(url).await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");

    // Over the socket: malformed JSON and an oversized message get error frames, the socket
    // stays usable.
    let mut wa = api.ws(a, None).await;
    wa.0.send(Ws::Text("{nope".into())).await.unwrap();
    assert_eq!(wa.expect("error").await["code"], "bad_frame");
    wa.send(json!({"type": "send", "to": b, "content": big, "client_id": "big"}))
        .await;
    let e = wa.expect("error").await;
    assert_eq!(
        (e["code"].as_str(), e["client_id"].as_str()),
        (Some("message_too_large"), Some("big"))
    );
    wa.send(json!({"type": "send", "to": b, "content": "still here", "client_id": "ok"}))
        .await;
    assert_eq!(wa.expect("ack").await["client_id"], "ok");
    assert_eq!(
        wb.expect("message").await["message"]["content"],
        "still here"
    );

    // A frame over the size limit closes that socket with 1009; the others keep going.
    wa.0.send(Ws::Text("y".repeat(20 * 1024).into()))
        .await
        .unwrap();
    assert_eq!(wa.closed_with(5).await, Some(1009));
    let (s, _) = api.send(c, b, "c still works", None).await;
    assert_eq!(s, 201);
    assert_eq!(
        wb.expect("message").await["message"]["content"],
        "c still works"
    );

    let (s, doc) = api.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(s, 200);
    assert!(doc["paths"]["/api/v1/ws"].is_object());
}

#[tokio::test]
async fn rate_limit_answers_with_an_error_frame() {
    let api = start(|c| {
        c.rate_per_sec = 1.0;
        c.rate_burst = 3.0;
    })
    .await;
    let (a, b) = (user(), user());
    let mut wa = api.ws(a, None).await;
    for i in 0..4 {
        wa.send(json!({"type": "send", "to": b, "content": "x", "client_id": format!("r{i}")}))
            .await;
    }
    for _ in 0..3 {
        wa.expect("ack").await;
    }
    let e = wa.expect("error").await;
    assert_eq!(e["code"], "rate_limited");
    assert_eq!(e["client_id"], "r3");
    // How long to wait, as a number (at most a second at 1 message per second).
    let wait = e["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!((1..=1000).contains(&wait), "{e}");
}

#[tokio::test]
async fn a_client_that_cannot_keep_up_is_closed_with_4001_and_recovers_with_since() {
    let api = start(|c| {
        c.outbound_queue = 8;
        c.write_timeout = Duration::from_millis(500);
    })
    .await;
    let (a, b) = (user(), user());
    let slow = api.ws(b, None).await;
    // B does not read; A floods big messages until B's socket buffers and queue are full.
    let big = "z".repeat(4000);
    let mut last = String::new();
    for i in 0..1500 {
        let (s, v) = api.send(a, b, &big, Some(&format!("f{i}"))).await;
        assert_eq!(s, 201);
        last = v["message"]["id"].as_str().unwrap().to_owned();
    }
    let mut slow = slow;
    assert_eq!(slow.closed_with(20).await, Some(4001));
    // Reconnecting with since=0 replays everything, in order, ending at the last message.
    let mut wb = api.ws(b, Some("0")).await;
    let mut n = 0;
    let mut newest = Value::Null;
    loop {
        let f = wb.expect_any().await;
        match f["type"].as_str() {
            Some("message") => {
                n += 1;
                newest = f["message"]["id"].clone();
            }
            Some("live") => break,
            _ => {}
        }
    }
    assert_eq!(n, 1500);
    assert_eq!(newest, json!(last));
}

#[tokio::test]
async fn live_chat_fans_out_with_history_slow_mode_and_bans() {
    let api = start(|_| {}).await;
    let (owner, v1, v2) = (user(), user(), user());
    api.reserve_stream(&api.token(owner), "demo").await;
    let mut w1 = api.ws(v1, None).await;
    w1.send(json!({"type": "subscribe", "room": "demo"})).await;
    w1.expect("subscribed").await;
    w1.send(json!({"type": "chat", "room": "demo", "content": "first!", "client_id": "x"}))
        .await;
    w1.expect("chat_ack").await;
    assert_eq!(w1.expect("chat").await["message"]["content"], "first!");
    // A later subscriber gets the history on join, then live messages.
    let mut w2 = api.ws(v2, None).await;
    w2.send(json!({"type": "subscribe", "room": "demo"})).await;
    let sub = w2.expect("subscribed").await;
    assert_eq!(sub["history"][0]["content"], "first!");
    // Slow mode: a second message within N s is refused with an error frame.
    let (s, _) = api
        .call(
            "PUT",
            "/api/v1/rooms/demo/slow-mode",
            Some(&api.token(v1)),
            Some(r#"{"seconds":30}"#),
        )
        .await;
    assert_eq!(s, 403, "only the owner sets slow mode");
    let (s, _) = api
        .call(
            "PUT",
            "/api/v1/rooms/demo/slow-mode",
            Some(&api.token(owner)),
            Some(r#"{"seconds":30}"#),
        )
        .await;
    assert_eq!(s, 200);
    w2.send(json!({"type": "chat", "room": "demo", "content": "one"}))
        .await;
    assert_eq!(w1.expect("chat").await["message"]["content"], "one");
    w2.send(json!({"type": "chat", "room": "demo", "content": "two"}))
        .await;
    let e = w2.expect("error").await;
    assert_eq!(e["code"], "slow_mode");
    let wait = e["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!((1..=30_000).contains(&wait), "{e}");
    // The owner times v1 out.
    let body = json!({"user": v1, "seconds": 600}).to_string();
    let (s, _) = api
        .call(
            "POST",
            "/api/v1/rooms/demo/bans",
            Some(&api.token(owner)),
            Some(&body),
        )
        .await;
    assert_eq!(s, 204);
    let (s, e) = api
        .call(
            "POST",
            "/api/v1/rooms/demo/messages",
            Some(&api.token(v1)),
            Some(r#"{"content":"hi"}"#),
        )
        .await;
    assert_eq!(s, 403);
    assert_eq!(e["error"]["code"], "banned");
}

#[tokio::test]
async fn rooms_over_rest_and_the_error_codes_of_each_refusal() {
    let api = start(|_| {}).await;
    let (owner, viewer) = (user(), user());
    let (to, tv) = (api.token(owner), api.token(viewer));
    let code = |v: &Value| v["error"]["code"].as_str().unwrap_or_default().to_owned();

    // No room exists for a name nobody reserved (and nothing is live here): reading one
    // creates nothing, posting is refused, and `claim` is gone.
    let (s, v) = api.call("GET", "/api/v1/rooms/show", Some(&tv), None).await;
    assert_eq!((s, code(&v)), (404, "no_such_room".into()));
    let (s, v) = api
        .call(
            "POST",
            "/api/v1/rooms/show/messages",
            Some(&tv),
            Some(r#"{"content":"first"}"#),
        )
        .await;
    assert_eq!((s, code(&v)), (404, "no_such_room".into()));
    let (s, _) = api
        .call("POST", "/api/v1/rooms/show/claim", Some(&tv), None)
        .await;
    assert_eq!(s, 404);

    // Rooms: the stream's owner owns its room; settings, post and history over REST,
    // moderation rules.
    api.reserve_stream(&to, "show").await;
    let (s, v) = api
        .call(
            "POST",
            "/api/v1/streams",
            Some(&tv),
            Some(r#"{"name":"show"}"#),
        )
        .await;
    assert_eq!((s, code(&v)), (409, "name_taken".into()));
    let (s, v) = api.call("GET", "/api/v1/rooms/show", Some(&tv), None).await;
    assert_eq!(s, 200);
    assert_eq!(v["settings"]["owner"], json!(owner));
    let (s, _) = api
        .call(
            "POST",
            "/api/v1/rooms/show/messages",
            Some(&tv),
            Some(r#"{"content":"hey"}"#),
        )
        .await;
    assert_eq!(s, 201);
    // The history is the store's: the acknowledged post is in it at once.
    let history = api
        .call("GET", "/api/v1/rooms/show/messages", Some(&tv), None)
        .await
        .1;
    assert_eq!(history["messages"][0]["content"], "hey");
    let (s, v) = api
        .call(
            "PUT",
            "/api/v1/rooms/show/slow-mode",
            Some(&to),
            Some(r#"{"seconds":3601}"#),
        )
        .await;
    assert_eq!((s, code(&v)), (400, "invalid".into()));
    let (s, v) = api
        .call(
            "PUT",
            "/api/v1/rooms/show/slow-mode",
            Some(&tv),
            Some(r#"{"seconds":5}"#),
        )
        .await;
    assert_eq!((s, code(&v)), (403, "not_owner".into()));
    let ban = json!({"user": viewer}).to_string();
    let (s, _) = api
        .call("POST", "/api/v1/rooms/show/bans", Some(&to), Some(&ban))
        .await;
    assert_eq!(s, 204);
    let (s, v) = api
        .call(
            "POST",
            "/api/v1/rooms/show/messages",
            Some(&tv),
            Some(r#"{"content":"x"}"#),
        )
        .await;
    assert_eq!((s, code(&v)), (403, "banned".into()));
    let unban = format!("/api/v1/rooms/show/bans/{viewer}");
    let (s, v) = api.call("DELETE", &unban, Some(&tv), None).await;
    assert_eq!(
        (s, code(&v)),
        (403, "not_owner".into()),
        "only the owner lifts a ban"
    );
    let (s, _) = api.call("DELETE", &unban, Some(&to), None).await;
    assert_eq!(s, 204);
    let (s, _) = api
        .call(
            "POST",
            "/api/v1/rooms/show/messages",
            Some(&tv),
            Some(r#"{"content":"back"}"#),
        )
        .await;
    assert_eq!(s, 201);
    let (s, v) = api
        .call("GET", "/api/v1/rooms/bad%20name", Some(&tv), None)
        .await;
    assert_eq!((s, code(&v)), (400, "bad_room".into()));

    // Direct messages: each refusal has its own code.
    let send = |body: Value| body.to_string();
    let (s, v) = api
        .call(
            "POST",
            "/api/v1/messages",
            Some(&to),
            Some(&send(json!({"to": owner, "content": "me"}))),
        )
        .await;
    assert_eq!((s, code(&v)), (400, "invalid_recipient".into()));
    let long = "c".repeat(129);
    let (s, v) = api
        .call(
            "POST",
            "/api/v1/messages",
            Some(&to),
            Some(&send(
                json!({"to": viewer, "content": "x", "client_id": long}),
            )),
        )
        .await;
    assert_eq!((s, code(&v)), (400, "invalid_client_id".into()));
    let (s, v) = api
        .call(
            "POST",
            "/api/v1/messages",
            Some(&to),
            Some(&send(json!({"to": viewer, "content": ""}))),
        )
        .await;
    assert_eq!((s, code(&v)), (400, "empty_message".into()));
    let (s, v) = api
        .call("POST", "/api/v1/messages", Some(&to), Some("{nope"))
        .await;
    assert_eq!((s, code(&v)), (400, "invalid_json".into()));
    let (s, v) = api
        .call("GET", "/api/v1/messages/not-an-id", Some(&to), None)
        .await;
    assert_eq!((s, code(&v)), (400, "invalid_id".into()));
    let (s, m) = api
        .call(
            "POST",
            "/api/v1/messages",
            Some(&to),
            Some(&send(json!({"to": viewer, "content": "hi"}))),
        )
        .await;
    assert_eq!(s, 201);
    let id = m["message"]["id"].as_str().unwrap().to_owned();
    let (s, v) = api
        .call(
            "PATCH",
            &format!("/api/v1/messages/{id}"),
            Some(&tv),
            Some(r#"{"content":"mine now"}"#),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (403, "forbidden".into()),
        "only the sender edits"
    );
    let (s, v) = api
        .call("GET", "/api/v1/conversations?limit=x", Some(&to), None)
        .await;
    assert_eq!((s, code(&v)), (400, "invalid_query".into()));
    let (s, v) = api
        .call("GET", "/api/v1/no/such/route", Some(&to), None)
        .await;
    assert_eq!((s, code(&v)), (404, "not_found".into()));

    // /metrics counts the open sockets.
    let _ws = api.ws(viewer, None).await;
    let (s, _) = api.call("GET", "/metrics", None, None).await;
    assert_eq!(s, 200);
    let mut tcp = tokio::net::TcpStream::connect(api.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).await.unwrap();
    assert!(text.contains("zerocast_ws_connections 1"), "{text}");
}

/// A socket without a token reads a room (its history on joining, then live messages) and can
/// send nothing: a chat, a direct message, a read marker or a typing notice gets
/// `sign_in_required`, and nothing is stored.
#[tokio::test]
async fn an_anonymous_socket_reads_rooms_and_sends_nothing() {
    let api = start(|_| {}).await;
    let (owner, v) = (user(), user());
    api.reserve_stream(&api.token(owner), "open").await;
    let mut wv = api.ws(v, None).await;
    wv.send(json!({"type": "subscribe", "room": "open"})).await;
    wv.expect("subscribed").await;
    wv.send(json!({"type": "chat", "room": "open", "content": "before", "client_id": "b"}))
        .await;
    wv.expect("chat_ack").await;
    let url = format!("ws://{}/api/v1/ws", api.addr);
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("an anonymous upgrade");
    let mut anon = common::Socket(ws);
    anon.send(json!({"type": "subscribe", "room": "open"}))
        .await;
    let sub = anon.expect("subscribed").await;
    assert_eq!(sub["history"][0]["content"], "before", "{sub}");
    wv.send(json!({"type": "chat", "room": "open", "content": "live", "client_id": "l"}))
        .await;
    assert_eq!(anon.expect("chat").await["message"]["content"], "live");
    for frame in [
        json!({"type": "chat", "room": "open", "content": "me too", "client_id": "a1"}),
        json!({"type": "send", "to": v, "content": "hi", "client_id": "a2"}),
        json!({"type": "read", "peer": v, "up_to": "1"}),
        json!({"type": "typing", "to": v}),
    ] {
        anon.send(frame.clone()).await;
        let e = anon.expect("error").await;
        assert_eq!(e["code"], "sign_in_required", "{frame}: {e}");
    }
    anon.send(json!({"type": "ping"})).await;
    anon.expect("pong").await;
    // Nothing the anonymous socket sent was stored.
    wv.send(json!({"type": "subscribe", "room": "open"})).await;
    let history = wv.expect("subscribed").await;
    let contents: Vec<_> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(contents, ["before", "live"]);
}

#[tokio::test]
async fn websocket_frames_of_every_kind_and_refused_upgrades() {
    let api = start(|_| {}).await;
    let (a, b) = (user(), user());
    // Upgrades with an invalid token, or with a bad `since`, are refused with a JSON error
    // (without a token the socket is anonymous: `an_anonymous_socket_reads_rooms_and_sends_nothing`).
    for (query, status) in [
        ("?access_token=forged".to_owned(), 401),
        (
            format!("?access_token={}&since=yesterday", api.token(a)),
            400,
        ),
    ] {
        let url = format!("ws://{}/api/v1/ws{query}", api.addr);
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                assert_eq!(r.status().as_u16(), status, "{query}")
            }
            other => panic!("{query}: upgrade not refused: {:?}", other.map(|_| ())),
        }
    }

    let mut wa = api.ws(a, None).await;
    let mut wb = api.ws(b, None).await;
    wa.send(json!({"type": "ping"})).await;
    wa.expect("pong").await;
    // Binary and malformed frames get an error frame each; the socket stays open.
    wa.0.send(Ws::Binary(vec![1, 2, 3].into())).await.unwrap();
    assert_eq!(wa.expect("error").await["code"], "bad_frame");
    wa.0.send(Ws::Text("{not json".into())).await.unwrap();
    assert_eq!(wa.expect("error").await["code"], "bad_frame");
    // Read markers over the socket: acknowledged to the reader, pushed to the sender.
    wb.send(json!({"type": "send", "to": a, "content": "read me", "client_id": "r"}))
        .await;
    let id = wb.expect("ack").await["id"].clone();
    wa.expect_message("read me").await;
    wa.send(json!({"type": "read", "peer": b, "up_to": id}))
        .await;
    assert_eq!(wa.expect("read_ack").await["up_to"], id);
    assert_eq!(wb.expect("read").await["up_to"], id);
    // A marker naming a message of another conversation is refused.
    let c = user();
    wa.send(json!({"type": "read", "peer": c, "up_to": id}))
        .await;
    assert_eq!(wa.expect("error").await["code"], "not_found");
    // A room needs a reserved (or live) stream: subscribing to another name is refused.
    wa.send(json!({"type": "subscribe", "room": "r1"})).await;
    assert_eq!(wa.expect("error").await["code"], "no_such_room");
    api.reserve_stream(&api.token(c), "r1").await;
    // Unsubscribed sockets get no more room messages.
    wa.send(json!({"type": "subscribe", "room": "r1"})).await;
    wa.expect("subscribed").await;
    wa.send(json!({"type": "unsubscribe", "room": "r1"})).await;
    wa.expect("unsubscribed").await;
    wb.send(json!({"type": "subscribe", "room": "r1"})).await;
    wb.expect("subscribed").await;
    wb.send(json!({"type": "chat", "room": "r1", "content": "anyone?"}))
        .await;
    assert_eq!(wb.expect("chat").await["message"]["content"], "anyone?");
    wa.send(json!({"type": "ping"})).await;
    let next = wa.expect_any().await;
    assert_eq!(next["type"], "pong", "no chat after unsubscribe: {next}");
    wa.send(json!({"type": "subscribe", "room": "no spaces"}))
        .await;
    assert_eq!(wa.expect("error").await["code"], "bad_room");
}

/// Connections that send nothing, or a request head a byte at a time (slowloris), are closed
/// by the header-read deadline, while a normal client is served meanwhile.
#[tokio::test]
async fn idle_and_slowloris_connections_are_closed_by_the_header_deadline() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let api = start(|c| {
        c.header_read_timeout = Duration::from_secs(2);
        c.conn_idle_timeout = Duration::from_secs(3);
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(tokio::net::TcpStream::connect(api.addr).await.unwrap());
    }
    let mut slow = Vec::new();
    for _ in 0..5 {
        let mut c = tokio::net::TcpStream::connect(api.addr).await.unwrap();
        c.write_all(b"GET /api/v1/health HTTP/1.1\r\n")
            .await
            .unwrap();
        slow.push(c);
    }
    // Drip a header byte every 500 ms into the slow ones while a normal client is served.
    let t = api.token(user());
    for _ in 0..8 {
        for c in &mut slow {
            let _ = c.write_all(b"X").await;
        }
        let (status, body) = api.call("GET", "/api/v1/health", Some(&t), None).await;
        assert_eq!(status, 200, "{body}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Both deadlines have passed by now (4 s of dripping); allow slack for a busy machine.
    let limit = Duration::from_secs(5);
    for c in idle.iter_mut().chain(slow.iter_mut()) {
        let mut buf = [0u8; 512];
        let closed = tokio::time::timeout(limit, async {
            loop {
                match c.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "a connection outlived the header-read deadline"
        );
    }
    let (status, _) = api.call("GET", "/api/v1/health", Some(&t), None).await;
    assert_eq!(status, 200);
}
