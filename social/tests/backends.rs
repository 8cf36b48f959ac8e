//! Opening the configured backends: `serve` on the embedded defaults (messages and the graph in
//! one fjall database under `data-dir/messages`), and misconfigured scale-out backends refused
//! with a line that says what is wrong, before any connection is tried.

mod common;

use std::time::{Duration, Instant};

use common::{client, test_config, user, TempDir};
use serde_json::json;
#[cfg(any(feature = "neo4j", feature = "scylla", feature = "redis"))]
use zerocast_social::{backends::open_backends, SocialConfig};

fn temp_dir() -> TempDir {
    TempDir(std::env::temp_dir().join(format!("zerocast-backends-test-{}", uuid::Uuid::new_v4())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_opens_the_embedded_backends_and_answers_until_shutdown() {
    let dir = temp_dir();
    let mut cfg = test_config(&dir.0);
    // A free loopback port: bind, read it, release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    cfg.api = ([127, 0, 0, 1], port).into();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(zerocast_social::serve(cfg, async {
        let _ = stopped.await;
    }));
    let api = client(([127, 0, 0, 1], port).into());
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(api.addr).await.is_err() {
        assert!(Instant::now() < deadline, "serve did not listen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (a, b) = (user(), user());
    let body = json!({"to": b.0.to_string(), "content": "hello"}).to_string();
    let (status, _) = api
        .call("POST", "/api/v1/messages", Some(&api.token(a)), Some(&body))
        .await;
    assert_eq!(status, 201);
    let (status, v) = api
        .call(
            "GET",
            &format!("/api/v1/conversations/{a}/messages"),
            Some(&api.token(b)),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(v["messages"][0]["content"], "hello");
    // The graph is in the same database.
    let (status, _) = api
        .call(
            "PUT",
            &format!("/api/v1/users/me/following/{b}"),
            Some(&api.token(a)),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (_, counts) = api
        .call(
            "GET",
            &format!("/api/v1/users/{b}/counts"),
            Some(&api.token(a)),
            None,
        )
        .await;
    assert_eq!(counts["followers"], 1);

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("serve stops after its shutdown future")
        .unwrap()
        .unwrap();
    assert!(dir.0.join("messages").is_dir());
}

/// `open_backends` on a config `tune` makes, expected to fail with a message containing `want`.
#[cfg(any(feature = "neo4j", feature = "scylla", feature = "redis"))]
async fn refused(tune: impl FnOnce(&mut SocialConfig), want: &str) {
    let dir = temp_dir();
    let mut cfg = test_config(&dir.0);
    tune(&mut cfg);
    let started = Instant::now();
    let err = open_backends(&cfg)
        .await
        .err()
        .unwrap_or_else(|| panic!("opened backends that should be refused ({want})"));
    let text = err.to_string();
    assert!(text.contains(want), "{text:?} does not say {want:?}");
    // Refused while parsing the settings, not after a connection attempt timed out.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[cfg(feature = "neo4j")]
#[tokio::test]
async fn bad_neo4j_settings_are_refused() {
    refused(
        |c| c.neo4j_uri = Some("ftp://graph:7687".into()),
        "unknown scheme",
    )
    .await;
    refused(
        |c| {
            c.neo4j_uri = Some("bolt://graph:7687".into());
            c.neo4j_timeout_ms = Some(0);
        },
        "milliseconds, 1 to 3600000",
    )
    .await;
    refused(
        |c| {
            c.neo4j_uri = Some("bolt://graph:7687".into());
            c.neo4j_max_connections = Some(5000);
        },
        "1 to 1024",
    )
    .await;
}

#[cfg(feature = "scylla")]
#[tokio::test]
async fn bad_scylla_settings_are_refused() {
    refused(
        |c| c.scylla_uri = Some("cassandra://db:9042".into()),
        "unknown scheme",
    )
    .await;
    refused(
        |c| {
            c.scylla_uri = Some("db:9042".into());
            c.scylla_replication = Some("three".into());
        },
        "bad replication",
    )
    .await;
    refused(
        |c| {
            c.scylla_uri = Some("db:9042".into());
            c.scylla_consistency = Some("sometimes".into());
        },
        "bad consistency",
    )
    .await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn a_bad_redis_url_is_refused() {
    refused(
        |c| c.redis_url = Some("cache:6379".into()),
        "invalid Redis URL",
    )
    .await;
}
