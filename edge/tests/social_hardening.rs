//! The social API's hardening through the real binary: the zerocast.toml keys (`jwt-issuer`,
//! `jwt-audience`, `api-cors-origins`, `api-header-timeout`, `ws-max-sockets-per-user`), a
//! store that will not open (the media plane keeps serving), and the media port's CORS for
//! `/api/streams` and `/metrics` (`media-api-cors`).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, http_get, read_response, Resp, TempDir};

/// A zerocast process, killed when the test ends (also when it fails); its stderr goes to
/// `log` inside the test's temp dir.
struct Proc {
    child: Child,
    log: std::path::PathBuf,
}

impl Proc {
    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn zerocast(args: &[&str], dir: &Path, log: &str) -> Proc {
    let log = dir.join(log);
    let child = Command::new(env!("CARGO_BIN_EXE_zerocast"))
        .args(args)
        .env("ZEROCAST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Proc { child, log }
}

fn wait_port(port: u16, p: &Proc) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "port {port} never opened:\n{}",
            p.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One request with extra header lines; the response.
fn request(port: u16, method: &str, path: &str, headers: &str) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}\r\n"
    )
    .unwrap();
    read_response(&mut std::io::BufReader::new(s)).unwrap()
}

fn token(config: Option<&Path>, data: &Path, user: &str) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zerocast"));
    cmd.args(["token", "--user", user, "--ttl", "1h", "--data-dir"])
        .arg(data);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

const USER: &str = "6f1c8d1e-5a0e-4c55-9d7e-2f1d2a4b8c90";

#[test]
fn zerocast_toml_keys_reach_the_social_api() {
    let dir = TempDir::new("social-keys");
    let data = dir.0.join("data");
    let api = free_port();
    let config = dir.0.join("zerocast.toml");
    std::fs::write(
        &config,
        format!(
            "api = \"127.0.0.1:{api}\"\ndata-dir = \"{}\"\njwt-issuer = \"https://id.example\"\n\
             jwt-audience = \"zerocast\"\napi-cors-origins = [\"https://app.example\"]\n\
             api-header-timeout = 300\nws-max-sockets-per-user = 1\n",
            data.display()
        ),
    )
    .unwrap();
    let p = zerocast(
        &["social", "--config", config.to_str().unwrap()],
        &dir.0,
        "social.log",
    );
    wait_port(api, &p);

    // jwt-issuer / jwt-audience: `zerocast token --config` mints what the server accepts; a
    // token without them (same secret) is refused.
    let good = token(Some(&config), &data, USER);
    let plain = token(None, &data, USER);
    let auth = |t: &str| format!("Authorization: Bearer {t}\r\n");
    assert_eq!(
        request(api, "GET", "/api/v1/unread", &auth(&good)).status,
        200
    );
    let r = request(api, "GET", "/api/v1/unread", &auth(&plain));
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("issuer"), "{}", r.text());

    // api-cors-origins: the preflight is answered for the listed origin only.
    let pre = |origin: &str| {
        request(
            api,
            "OPTIONS",
            "/api/v1/messages",
            &format!("Origin: {origin}\r\nAccess-Control-Request-Method: POST\r\n"),
        )
    };
    let r = pre("https://app.example");
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert!(r
        .header("access-control-allow-headers")
        .is_some_and(|h| h.contains("Authorization")));
    assert_eq!(pre("https://other.example").status, 403);

    // api-header-timeout (300 ms): a head that never completes is answered and closed long
    // before the 10 s default (the read below would time out first).
    let mut s = TcpStream::connect(("127.0.0.1", api)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut out = Vec::new();
    let r = s.read_to_end(&mut out);
    assert!(
        r.is_ok()
            || r.as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the server closed the connection: {r:?}"
    );

    // ws-max-sockets-per-user = 1: the second socket of the same user is closed with 4004.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let url = format!("ws://127.0.0.1:{api}/api/v1/ws?access_token={good}");
        use futures_util::SinkExt;
        let (mut first, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        // The pong says the first socket is registered (that happens after the 101).
        first
            .send(Message::Text(r#"{"type":"ping"}"#.into()))
            .await
            .unwrap();
        let pong = tokio::time::timeout(Duration::from_secs(10), first.next()).await;
        assert!(
            matches!(&pong, Ok(Some(Ok(Message::Text(t)))) if t.contains("pong")),
            "{pong:?}"
        );
        let (mut second, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        let mut code = None;
        while let Ok(Some(Ok(m))) =
            tokio::time::timeout(Duration::from_secs(10), second.next()).await
        {
            if let Message::Close(f) = m {
                code = f.map(|f| u16::from(f.code));
                break;
            }
        }
        assert_eq!(code, Some(4004));
    });
}

/// Starts `zerocast serve` on fresh loopback ports over `data`; returns it and (http, api).
fn serve(dir: &Path, data: &Path, log: &str, extra: &[&str]) -> (Proc, u16, u16) {
    let (rtmp, http, api, api_https) = (free_port(), free_port(), free_port(), free_port());
    let addr = |p: u16| format!("127.0.0.1:{p}");
    let mut args = vec![
        "serve".to_owned(),
        "--workers".into(),
        "1".into(),
        "--rtmp".into(),
        addr(rtmp),
        "--http".into(),
        addr(http),
        "--api".into(),
        addr(api),
        "--api-https".into(),
        addr(api_https),
        "--data-dir".into(),
        data.to_str().unwrap().into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let p = zerocast(&args, dir, log);
    wait_port(http, &p);
    (p, http, api)
}

fn assert_media_serves(http: u16, p: &Proc) {
    let r = http_get(http, "/api/streams", Duration::from_secs(10)).unwrap();
    assert_eq!(r.status, 200, "{}", p.logs());
    assert!(r.text().contains("\"streams\""));
    assert_eq!(
        http_get(http, "/live/nothing/index.m3u8", Duration::from_secs(10))
            .unwrap()
            .status,
        404
    );
}

#[test]
fn a_store_that_does_not_open_disables_the_social_api_not_the_media_plane() {
    let dir = TempDir::new("bad-store");

    // 1. Damaged: the store's files are garbage.
    let data = dir.0.join("damaged");
    let store = data.join("messages");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join("version"), b"not a fjall version marker").unwrap();
    std::fs::write(store.join("lock"), b"").unwrap();
    let (p, http, api) = serve(&dir.0, &data, "damaged.log", &[]);
    assert_media_serves(http, &p);
    assert!(
        TcpStream::connect(("127.0.0.1", api)).is_err(),
        "no social API"
    );
    let logs = p.logs();
    let lines: Vec<&str> = logs.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(lines.len(), 1, "one error line:\n{logs}");
    for needle in [
        "social API disabled, media keeps serving",
        store.to_str().unwrap(),
        "move it aside",
        "restore",
        "another zerocast process",
    ] {
        assert!(lines[0].contains(needle), "{needle:?} not in {}", lines[0]);
    }
    drop(p);
    // `zerocast social` (social only) exits with the same explanation.
    let out = Command::new(env!("CARGO_BIN_EXE_zerocast"))
        .args([
            "social",
            "--api",
            &format!("127.0.0.1:{}", free_port()),
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(store.to_str().unwrap()) && err.contains("move it aside"),
        "{err}"
    );

    // 2. Held: another running zerocast has the store open.
    let data = dir.0.join("shared");
    let (first, _, first_api) = serve(&dir.0, &data, "first.log", &[]);
    wait_port(first_api, &first);
    let (second, http, api) = serve(&dir.0, &data, "second.log", &[]);
    assert_media_serves(http, &second);
    assert!(TcpStream::connect(("127.0.0.1", api)).is_err());
    let logs = second.logs();
    assert!(
        logs.contains("social API disabled") && logs.contains("Locked"),
        "{logs}"
    );
    // The first keeps its social API.
    let r = request(first_api, "GET", "/api/v1/health", "");
    assert_eq!(r.status, 200);
}

#[test]
fn the_media_api_is_not_readable_cross_origin_unless_configured() {
    let dir = TempDir::new("media-cors");
    let get = |http: u16, path: &str, origin: &str| {
        request(http, "GET", path, &format!("Origin: {origin}\r\n"))
    };
    let (p, http, _) = serve(&dir.0, &dir.0.join("a"), "a.log", &[]);
    for path in ["/api/streams", "/metrics"] {
        let r = get(http, path, "https://dash.example");
        assert_eq!(r.status, 200, "{}", p.logs());
        assert_eq!(r.header("access-control-allow-origin"), None, "{path}");
        assert_eq!(r.header("timing-allow-origin"), None, "{path}");
        let r = request(
            http,
            "OPTIONS",
            path,
            "Origin: https://dash.example\r\nAccess-Control-Request-Method: GET\r\n",
        );
        assert_eq!(r.header("access-control-allow-origin"), None, "{path}");
    }
    // Media keeps `*`: players are served from other origins.
    let r = get(http, "/live/nothing/index.m3u8", "https://player.example");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    drop(p);

    let (p, http, _) = serve(
        &dir.0,
        &dir.0.join("b"),
        "b.log",
        &["--media-api-cors", "https://dash.example"],
    );
    let r = get(http, "/api/streams", "https://dash.example");
    assert_eq!(r.status, 200, "{}", p.logs());
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://dash.example")
    );
    assert_eq!(r.header("vary"), Some("origin"));
    assert_eq!(
        get(http, "/metrics", "https://evil.example").header("access-control-allow-origin"),
        None
    );
    drop(p);

    let (_p, http, _) = serve(
        &dir.0,
        &dir.0.join("c"),
        "c.log",
        &["--media-api-cors", "*"],
    );
    assert_eq!(
        get(http, "/metrics", "https://any.example").header("access-control-allow-origin"),
        Some("*")
    );
}
