//! The social API's hardening over real loopback sockets: token expiry closes a WebSocket
//! (4003), query-string tokens only on the upgrade, `iss`/`aud` checks, CORS and the WebSocket
//! `Origin` check, sockets per user, subscriptions per socket, and typing notices only to
//! conversation partners at a bounded pace.

mod common;

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use zerocast_social::auth::{Audience, Claims, Keys};

use common::{start, user, Api, Socket, SECRET};

/// Opens a WebSocket with `token` in the query and an optional `Origin`; the HTTP status of a
/// refused upgrade as `Err`.
async fn ws_with(api: &Api, token: &str, origin: Option<&str>) -> Result<Socket, u16> {
    let url = format!("ws://{}/api/v1/ws?access_token={token}", api.addr);
    let mut req = url.into_client_request().unwrap();
    if let Some(o) = origin {
        req.headers_mut()
            .insert("origin", HeaderValue::from_str(o).unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(Socket(ws)),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("upgrade failed: {e}"),
    }
}

fn now_s() -> u64 {
    zerocast_social::now_ms() / 1000
}

#[tokio::test]
async fn a_websocket_is_closed_with_4003_when_its_token_expires() {
    let api = start(|c| c.jwt_leeway = Duration::ZERO).await;
    let a = user();
    let short = api.keys.issue(a, now_s(), 2);
    let mut ws = ws_with(&api, &short, None).await.unwrap();
    // The socket works until then...
    ws.send(json!({"type": "ping"})).await;
    ws.expect("pong").await;
    // ...and is closed by the server's timer, with nothing sent by the client.
    assert_eq!(ws.closed_with(15).await, Some(4003));
    // The token is refused from then on, so the client must refresh it before reconnecting.
    let (s, e) = api.call("GET", "/api/v1/unread", Some(&short), None).await;
    assert_eq!(
        (s, e["error"]["message"].as_str()),
        (401, Some("token expired"))
    );
    // A long-lived token's socket is not closed by the timer.
    let mut long = ws_with(&api, &api.token(a), None).await.unwrap();
    long.send(json!({"type": "ping"})).await;
    long.expect("pong").await;
    // exp = u64::MAX (and a leeway that would overflow it) opens and works: no overflow, no
    // panic in the timer arithmetic.
    let forever = api.keys.sign(&Claims {
        sub: a.0.to_string(),
        exp: u64::MAX,
        iat: 0,
        nbf: None,
        iss: None,
        aud: None,
    });
    let mut ws = ws_with(&api, &forever, None).await.unwrap();
    ws.send(json!({"type": "ping"})).await;
    ws.expect("pong").await;
}

#[tokio::test]
async fn rest_refuses_query_tokens_and_the_websocket_takes_them() {
    let api = start(|_| {}).await;
    let a = user();
    let t = api.token(a);
    let (s, e) = api
        .call(
            "GET",
            &format!("/api/v1/unread?access_token={t}"),
            None,
            None,
        )
        .await;
    assert_eq!(s, 401);
    assert_eq!(e["error"]["code"], "token_in_query");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer"),
        "{e}"
    );
    // Refused even next to a valid header: the URL is already in some log.
    let (s, e) = api
        .call(
            "GET",
            &format!("/api/v1/conversations?limit=5&access_token={t}"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (401, Some("token_in_query"))
    );
    let (s, _) = api.call("GET", "/api/v1/unread", Some(&t), None).await;
    assert_eq!(s, 200);
    let mut ws = ws_with(&api, &t, None).await.expect("the upgrade takes it");
    ws.send(json!({"type": "ping"})).await;
    ws.expect("pong").await;
}

#[tokio::test]
async fn issuer_and_audience_are_checked_when_configured() {
    let api = start(|c| {
        c.jwt_issuer = Some("https://id.example".into());
        c.jwt_audience = Some("zerocast".into());
    })
    .await;
    let a = user();
    let strict = Keys::new(SECRET)
        .with_issuer(Some("https://id.example".into()))
        .with_audience(Some("zerocast".into()));
    let bare = api.token(a);
    let (s, e) = api.call("GET", "/api/v1/unread", Some(&bare), None).await;
    assert_eq!(s, 401);
    assert_eq!(e["error"]["message"], "token issuer is not accepted");
    assert_eq!(ws_with(&api, &bare, None).await.err(), Some(401));
    let good = strict.issue(a, now_s(), 600);
    let (s, _) = api.call("GET", "/api/v1/unread", Some(&good), None).await;
    assert_eq!(s, 200);
    assert!(ws_with(&api, &good, None).await.is_ok());
    let other_aud = strict.sign(&Claims {
        sub: a.0.to_string(),
        exp: now_s() + 600,
        iat: now_s(),
        nbf: None,
        iss: Some("https://id.example".into()),
        aud: Some(Audience::Many(vec!["billing".into()])),
    });
    let (s, e) = api
        .call("GET", "/api/v1/unread", Some(&other_aud), None)
        .await;
    assert_eq!(s, 401);
    assert_eq!(e["error"]["message"], "token audience is not accepted");
}

#[tokio::test]
async fn cors_answers_preflights_and_checks_websocket_origins() {
    let api = start(|c| c.cors_origins = vec!["https://app.example".into()]).await;
    let a = user();
    let preflight = |origin: &str| {
        format!(
            "OPTIONS /api/v1/messages HTTP/1.1\r\nHost: x\r\nConnection: close\r\nOrigin: {origin}\r\n\
             Access-Control-Request-Method: POST\r\n\
             Access-Control-Request-Headers: authorization, content-type\r\n\r\n"
        )
    };
    let (s, head, _) = api.raw(&preflight("https://app.example")).await;
    assert_eq!(s, 204, "{head}");
    for h in [
        "access-control-allow-origin: https://app.example",
        "access-control-allow-methods: get, post, put, patch, delete, options",
        "access-control-allow-headers: authorization, content-type",
        "access-control-max-age: 600",
        "vary: origin",
    ] {
        assert!(head.contains(h), "{h} missing in:\n{head}");
    }
    let (s, head, body) = api.raw(&preflight("https://evil.example")).await;
    assert_eq!(s, 403);
    assert!(!head.contains("access-control-allow-origin"), "{head}");
    assert!(body.contains("origin_not_allowed"), "{body}");
    // An actual request from the allowed origin can be read by its script; from another
    // origin it gets no CORS headers (the browser hides the answer).
    let get = |origin: &str| {
        format!(
            "GET /api/v1/unread HTTP/1.1\r\nHost: x\r\nConnection: close\r\nOrigin: {origin}\r\n\
             Authorization: Bearer {}\r\n\r\n",
            api.token(a)
        )
    };
    let (s, head, _) = api.raw(&get("https://app.example")).await;
    assert_eq!(s, 200);
    assert!(
        head.contains("access-control-allow-origin: https://app.example"),
        "{head}"
    );
    assert!(head.contains("access-control-expose-headers: retry-after"));
    let (s, head, _) = api.raw(&get("https://evil.example")).await;
    assert_eq!(s, 200);
    assert!(!head.contains("access-control-allow-origin"), "{head}");

    // WebSocket: a browser on another origin is refused at the upgrade; the allowed origin
    // and clients that send no Origin (not browsers) get in.
    let t = api.token(a);
    assert_eq!(
        ws_with(&api, &t, Some("https://evil.example")).await.err(),
        Some(403)
    );
    assert!(ws_with(&api, &t, Some("https://app.example")).await.is_ok());
    assert!(ws_with(&api, &t, None).await.is_ok());

    // With no origins configured (the default): no CORS headers at all, every browser
    // WebSocket refused.
    let closed = start(|_| {}).await;
    let (s, head, _) = closed.raw(&preflight("https://app.example")).await;
    assert_eq!(s, 403);
    assert!(!head.contains("access-control-"), "{head}");
    assert_eq!(
        ws_with(&closed, &closed.token(a), Some("https://app.example"))
            .await
            .err(),
        Some(403)
    );
    assert!(ws_with(&closed, &closed.token(a), None).await.is_ok());

    // The media server's own pages (`page_ports`, which `zerocast serve` sets to its media
    // ports): an Origin on the host the request names, at a page port, is allowed with no
    // list; the same host at another port, or another host, is not.
    let served = start(|c| c.page_ports = vec![8080]).await;
    let on_host = |origin: &str| {
        format!(
            "OPTIONS /api/v1/messages HTTP/1.1\r\nHost: live.example:8090\r\nConnection: close\r\n\
             Origin: {origin}\r\nAccess-Control-Request-Method: POST\r\n\r\n"
        )
    };
    let (s, head, _) = served.raw(&on_host("http://live.example:8080")).await;
    assert_eq!(s, 204, "{head}");
    assert!(
        head.contains("access-control-allow-origin: http://live.example:8080"),
        "{head}"
    );
    for other in ["http://live.example:8081", "http://evil.example:8080"] {
        let (s, _, _) = served.raw(&on_host(other)).await;
        assert_eq!(s, 403, "{other}");
    }
    let t = served.token(a);
    assert!(ws_with(&served, &t, Some("http://127.0.0.1:8080"))
        .await
        .is_ok());
    assert_eq!(
        ws_with(&served, &t, Some("http://localhost:8080"))
            .await
            .err(),
        Some(403)
    );
}

async fn metric(api: &Api, limit: &str) -> u64 {
    let (s, _, body) = api
        .raw("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(s, 200);
    let key = format!("zerocast_ws_limit_total{{limit=\"{limit}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&key))
        .unwrap_or_else(|| panic!("no {key} in:\n{body}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn sockets_per_user_and_subscriptions_per_socket_are_capped() {
    let api = start(|c| {
        c.max_sockets_per_user = 2;
        c.max_subscriptions = 2;
    })
    .await;
    let (a, b) = (user(), user());
    let mut first = api.ws(a, None).await;
    let mut second = api.ws(a, None).await;
    // A pong says a socket is registered (that happens after the 101).
    for s in [&mut first, &mut second] {
        s.send(json!({"type": "ping"})).await;
        s.expect("pong").await;
    }
    // The third socket of the same user is told why and closed.
    let mut third = api.ws(a, None).await;
    let e = third.expect("error").await;
    assert_eq!(e["code"], "too_many_sockets");
    assert_eq!(third.closed_with(10).await, Some(4004));
    assert_eq!(metric(&api, "sockets_per_user").await, 1);
    // Another user is not affected.
    let mut other = api.ws(b, None).await;
    other.send(json!({"type": "ping"})).await;
    other.expect("pong").await;
    // Closing one socket makes room for another.
    first.0.close(None).await.unwrap();
    let _ = first.closed_with(10).await;
    let mut again = None;
    for _ in 0..50 {
        let mut s = api.ws(a, None).await;
        s.send(json!({"type": "ping"})).await;
        let f = s.expect_any().await;
        if f["type"] == "pong" {
            again = Some(s);
            break;
        }
        // The server may not have unregistered the closed socket yet.
        assert_eq!(f["code"], "too_many_sockets", "{f}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut s = again.expect("a socket once one was closed");

    // Subscriptions: two rooms, then an error frame; the same room again is no new one. Rooms
    // exist for reserved stream names.
    let owner = api.token(user());
    for room in ["r1", "r2", "r3"] {
        api.reserve_stream(&owner, room).await;
    }
    for room in ["r1", "r2"] {
        s.send(json!({"type": "subscribe", "room": room})).await;
        assert_eq!(s.expect("subscribed").await["room"], room);
    }
    s.send(json!({"type": "subscribe", "room": "r3"})).await;
    let e = s.expect("error").await;
    assert_eq!(
        (e["code"].as_str(), e["room"].as_str()),
        (Some("too_many_subscriptions"), Some("r3"))
    );
    s.send(json!({"type": "subscribe", "room": "r2"})).await;
    assert_eq!(s.expect("subscribed").await["room"], "r2");
    s.send(json!({"type": "unsubscribe", "room": "r1"})).await;
    s.expect("unsubscribed").await;
    s.send(json!({"type": "subscribe", "room": "r3"})).await;
    assert_eq!(s.expect("subscribed").await["room"], "r3");
    assert_eq!(metric(&api, "subscriptions").await, 1);
}

#[tokio::test]
async fn typing_reaches_only_conversation_partners_at_a_bounded_pace() {
    // One notice per hour per user: the pace is exercised without waiting on a clock.
    let api = start(|c| c.typing_interval = Duration::from_secs(3600)).await;
    let (a, b, c, d) = (user(), user(), user(), user());
    // A and D have talked with B; C never has.
    for (from, to) in [(a, b), (b, d)] {
        let (s, _) = api.send(from, to, "hi", None).await;
        assert_eq!(s, 201);
    }
    let mut wa = api.ws(a, None).await;
    let mut wb = api.ws(b, None).await;
    let mut wc = api.ws(c, None).await;
    let mut wd = api.ws(d, None).await;

    // A stranger's notice is refused before it reaches the bus...
    wc.send(json!({"type": "typing", "to": b})).await;
    assert_eq!(wc.expect("error").await["code"], "not_a_partner");
    // ...so the first notice B gets is A's.
    wa.send(json!({"type": "typing", "to": b})).await;
    assert_eq!(next_typing(&mut wb).await["from"], json!(a));
    // A's second notice within the interval is dropped with an error frame...
    wa.send(json!({"type": "typing", "to": b})).await;
    let e = wa.expect("error").await;
    assert_eq!(e["code"], "typing_rate_limited");
    assert_eq!(e["retry_after_ms"], 3_600_000);
    // ...so the next notice B gets is D's, not A's again. The pace is per user: A's other
    // socket is limited too.
    let mut wa2 = api.ws(a, None).await;
    wa2.send(json!({"type": "typing", "to": b})).await;
    assert_eq!(wa2.expect("error").await["code"], "typing_rate_limited");
    wd.send(json!({"type": "typing", "to": b})).await;
    assert_eq!(next_typing(&mut wb).await["from"], json!(d));
    // To oneself: there is no such conversation.
    wb.send(json!({"type": "typing", "to": b})).await;
    assert_eq!(wb.expect("error").await["code"], "not_a_partner");
    assert_eq!(metric(&api, "typing_stranger").await, 2);
    assert_eq!(metric(&api, "typing_rate").await, 2);
}

/// The next `typing` frame (message pushes from the setup are skipped).
async fn next_typing(ws: &mut Socket) -> Value {
    ws.expect("typing").await
}

/// The API's listeners cap connections per address: past the cap a connection is closed
/// before a byte is read, and a freed place is taken again.
#[tokio::test]
async fn connections_per_address_are_capped() {
    let api = start(|c| c.max_connections_per_ip = 3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(api.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut over = TcpStream::connect(api.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), over.read(&mut buf))
        .await
        .expect("closed at once, not left hanging")
        .unwrap_or(0);
    assert_eq!(n, 0, "the connection over the cap was closed");
    held.pop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _) = api.call("GET", "/api/v1/health", None, None).await;
    assert_eq!(status, 200);
}

/// Guests' sockets (no token) are connections like any other: one address holds at most the
/// per-address cap of them, the next is refused, and a signed-in user's socket gets a place
/// as soon as one frees, with its chat going to the guests still open.
#[tokio::test]
async fn guest_sockets_are_held_to_the_connection_caps() {
    let api = start(|c| c.max_connections_per_ip = 3).await;
    let guest = || async {
        let url = format!("ws://{}/api/v1/ws", api.addr);
        tokio_tungstenite::connect_async(url)
            .await
            .map(|(ws, _)| ws)
    };
    let mut guests = Vec::new();
    for _ in 0..3 {
        guests.push(guest().await.expect("a guest within the cap"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(guest().await.is_err(), "a fourth guest from one address");
    // A place frees: a signed-in user gets it and chats; the guests still open read it.
    let (owner, a) = (user(), user());
    let _ = guests.pop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut wa = api.ws(a, None).await;
    drop(guests.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    api.reserve_stream(&api.token(owner), "capped").await;
    let mut g = common::Socket(guests.pop().unwrap());
    g.send(json!({"type": "subscribe", "room": "capped"})).await;
    g.expect("subscribed").await;
    wa.send(json!({"type": "subscribe", "room": "capped"}))
        .await;
    wa.expect("subscribed").await;
    wa.send(json!({"type": "chat", "room": "capped", "content": "hello guests"}))
        .await;
    assert_eq!(g.expect("chat").await["message"]["content"], "hello guests");
}
