//! The social API in the real binary: `zerocast token` and `zerocast social`, and `kill -9`
//! during a burst of sends loses no acknowledged message.

// Tests print what they measured; that is their report.
#![allow(clippy::print_stdout)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{free_port, make_cert};

fn token(data: &Path, user: &str) -> String {
    common::user_token(data, user)
}

/// The server process, killed when the test ends (also when it fails).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(data: &Path, port: u16) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_zerocast"))
        .args([
            "social",
            "--api",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "social API did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Proc(child)
}

/// One request; returns (status, body).
fn call(
    port: u16,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    Ok((
        status,
        out.split_once("\r\n\r\n").map_or("", |x| x.1).to_owned(),
    ))
}

fn message_id(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v["message"]["id"].as_str().map(str::to_owned)
}

#[test]
fn kill_9_during_a_burst_loses_no_acknowledged_message() {
    let data = std::env::temp_dir().join(format!("zerocast-kill9-{}", free_port()));
    let _ = std::fs::remove_dir_all(&data);
    // Eight senders (the per-user rate limit is 10/s with bursts of 20) to one recipient.
    let b = uuid::Uuid::new_v4().to_string();
    let tb = token(&data, &b);
    let senders_tokens: Vec<String> = (0..8)
        .map(|_| token(&data, &uuid::Uuid::new_v4().to_string()))
        .collect();
    let port = free_port();
    let mut server = start(&data, port);

    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..8)
        .map(|t| {
            let (acked, stop, b) = (acked.clone(), stop.clone(), b.clone());
            let ta = senders_tokens[t].clone();
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let body = format!(
                        r#"{{"to":"{b}","content":"burst {t}/{i}","client_id":"{t}-{i}"}}"#
                    );
                    // Only a complete 201 response is an acknowledgement.
                    if let Ok((201, body)) =
                        call(port, "POST", "/api/v1/messages", &ta, Some(&body))
                    {
                        if let Some(id) = message_id(&body) {
                            acked.lock().unwrap().push(id);
                        }
                    } else {
                        // Rate-limited (429) or the server is gone: back off a little.
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    i += 1;
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < 300 {
        assert!(Instant::now() < deadline, "the burst did not get going");
        std::thread::sleep(Duration::from_millis(5));
    }
    server.0.kill().unwrap(); // SIGKILL, mid-burst
    server.0.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let _server = start(&data, port);
    let mut missing = Vec::new();
    for id in &acked {
        let (status, _) = call(port, "GET", &format!("/api/v1/messages/{id}"), &tb, None).unwrap();
        if status != 200 {
            missing.push(id.clone());
        }
    }
    let (status, unread) = call(port, "GET", "/api/v1/unread", &tb, None).unwrap();
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&unread).unwrap();
    let stored = v["total"].as_u64().unwrap_or(0) as usize;
    let _ = std::fs::remove_dir_all(&data);
    println!(
        "kill -9 after {} acknowledged sends: {} stored after restart, {} acknowledged missing",
        acked.len(),
        stored,
        missing.len()
    );
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    assert!(stored >= acked.len());
}

/// The social API over TLS: REST over HTTPS (curl, verifying the certificate) and a WSS
/// client (tokio-tungstenite over rustls, trusting only the test certificate) exchange direct
/// messages; the plain port keeps working beside it.
#[test]
fn social_api_over_https_and_wss() {
    let data = std::env::temp_dir().join(format!("zerocast-social-tls-{}", free_port()));
    let certs = data.join("certs");
    make_cert(&certs);
    let (cert, key) = (certs.join("cert.pem"), certs.join("key.pem"));
    let (plain, secure) = (free_port(), free_port());
    let _server = Proc(
        Command::new(env!("CARGO_BIN_EXE_zerocast"))
            .args(["social", "--api", &format!("127.0.0.1:{plain}")])
            .args(["--api-https", &format!("127.0.0.1:{secure}")])
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .arg("--data-dir")
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", secure)).is_err() {
        assert!(
            Instant::now() < deadline,
            "social API over TLS did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (a, b) = (uuid_v4(), uuid_v4());
    let (ta, tb) = (token(&data, &a), token(&data, &b));
    let https = |method: &str, path: &str, token: &str, body: Option<&str>| -> (String, String) {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "10", "--cacert"])
            .arg(&cert)
            .args(["--resolve", &format!("localhost:{secure}:127.0.0.1")])
            .args([
                "-X",
                method,
                "-H",
                &format!("Authorization: Bearer {token}"),
            ])
            .args(["-w", "\n%{http_code} %{http_version}"]);
        if let Some(b) = body {
            cmd.args(["-H", "Content-Type: application/json", "--data", b]);
        }
        let out = cmd
            .arg(format!("https://localhost:{secure}{path}"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", ""));
        assert!(
            out.status.success(),
            "curl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (status.to_owned(), body.to_owned())
    };
    let (status, body) = https("GET", "/api/v1/health", &ta, None);
    assert_eq!(status, "200 1.1", "{body}");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let mut roots = rustls::RootCertStore::empty();
        use rustls_pki_types::pem::PemObject;
        for c in rustls_pki_types::CertificateDer::pem_file_iter(&cert).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", secure))
            .await
            .unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .expect("the server's certificate verifies for localhost");
        let url = format!("wss://localhost:{secure}/api/v1/ws?access_token={ta}");
        let (mut ws, _) = tokio_tungstenite::client_async(url, tls)
            .await
            .expect("WebSocket upgrade over TLS");
        macro_rules! next {
            () => {
                match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) => {
                        serde_json::from_str::<serde_json::Value>(&t).unwrap()
                    }
                    other => panic!("no frame: {other:?}"),
                }
            };
        }
        // B writes to A over HTTPS; A receives it over WSS.
        // (curl blocks this single-threaded runtime briefly; the frame waits in the socket.)
        let (status, body) = https(
            "POST",
            "/api/v1/messages",
            &tb,
            Some(&format!(r#"{{"to":"{a}","content":"over tls"}}"#)),
        );
        assert!(status.starts_with("20"), "{status} {body}");
        let pushed = next!();
        assert_eq!(pushed["type"], "message", "{pushed}");
        assert_eq!(pushed["message"]["content"], "over tls", "{pushed}");
        // A answers over WSS and gets its ack.
        ws.send(Message::text(format!(
            r#"{{"type":"send","to":"{b}","content":"back","client_id":"c1"}}"#
        )))
        .await
        .unwrap();
        // The ack, and the push of A's own message to A's sockets, may come in either order.
        let mut ack = next!();
        if ack["type"] == "message" {
            ack = next!();
        }
        assert_eq!(ack["type"], "ack", "{ack}");
    });
    // The plain port serves beside the TLS one.
    let (status, _) = call(plain, "GET", "/api/v1/health", &ta, None).unwrap();
    assert_eq!(status, 200);
    let _ = std::fs::remove_dir_all(&data);
}

fn uuid_v4() -> String {
    uuid::Uuid::new_v4().to_string()
}
