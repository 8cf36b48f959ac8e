//! Helpers for the end-to-end tests: the real `zerocast` binary, real ffmpeg, a tiny HTTP/1.1
//! client over `std::net` (no client library between the test and the server's bytes).

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(format!(
            "zerocast-tmp-{tag}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&d).unwrap();
        Self(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `zerocast cert --self-signed` into `dir` (`cert.pem`, `key.pem`); returns the SPKI pin it
/// printed (for curl's `--pinnedpubkey` and Chromium's `--ignore-certificate-errors-spki-list`).
pub fn make_cert(dir: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_zerocast"))
        .args(["cert", "--self-signed", "--host", "localhost", "--out"])
        .arg(dir)
        .output()
        .expect("run zerocast cert");
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(dir.join("cert.pem").exists() && dir.join("key.pem").exists());
    stdout
        .lines()
        .find_map(|l| {
            l.split_once("spki-list): ")
                .map(|(_, pin)| pin.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no SPKI pin printed: {stdout}"))
}

/// A running server with TLS: a `make_cert` certificate in `certs`, HTTPS on `https` and RTMPS
/// on `rtmps` (loopback); `pin` is the certificate's SPKI pin.
pub struct TlsServer {
    pub server: Server,
    pub https: u16,
    pub rtmps: u16,
    pub certs: TempDir,
    pub pin: String,
}

impl TlsServer {
    /// Starts one with `extra` flags and `env` variables.
    pub fn start(tag: &str, extra: &[&str], env: &[(&str, String)]) -> TlsServer {
        let certs = TempDir::new(tag);
        let pin = make_cert(&certs.0);
        let (https, rtmps) = (free_port(), free_port());
        let (cert, key) = (certs.0.join("cert.pem"), certs.0.join("key.pem"));
        let (https_addr, rtmps_addr) = (format!("127.0.0.1:{https}"), format!("127.0.0.1:{rtmps}"));
        let mut args = vec![
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--https",
            &https_addr,
            "--rtmps",
            &rtmps_addr,
        ];
        args.extend_from_slice(extra);
        let server = Server::start_with_env("auto", &args, env);
        TlsServer {
            server,
            https,
            rtmps,
            certs,
            pin,
        }
    }

    pub fn https_url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.https)
    }
}

/// Resident memory of `pid`, KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Open descriptors of `pid`.
pub fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A running `zerocast serve` on loopback ports; killed on drop.
pub struct Server {
    pub child: Child,
    pub rtmp: u16,
    pub http: u16,
    /// The social API's plain port.
    pub api: u16,
    pub log: PathBuf,
    /// The server's data directory, removed with its log when the server is dropped.
    pub data: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

fn spawn_server(args: &[String], env: &[(String, String)], log: &PathBuf, append: bool) -> Child {
    let logf = std::fs::OpenOptions::new()
        .create(true)
        .append(append)
        .write(true)
        .truncate(!append)
        .open(log)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_zerocast"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env(
            "ZEROCAST_LOG",
            "info,h2=error,quinn=error,quinn_proto=error",
        )
        .stdout(Stdio::null())
        .stderr(logf)
        .spawn()
        .expect("start zerocast")
}

impl Server {
    pub fn start(driver: &str, extra: &[&str]) -> Server {
        Self::start_with_env(driver, extra, &[])
    }

    /// [`Server::start`] with extra `ZEROCAST_*` environment variables.
    pub fn start_with_env(driver: &str, extra: &[&str], env: &[(&str, String)]) -> Server {
        let rtmp = free_port();
        let http = free_port();
        let api = free_port();
        let log = std::env::temp_dir().join(format!("zerocast-test-{http}.log"));
        let data = std::env::temp_dir().join(format!("zerocast-test-data-{http}"));
        // Used only with a certificate; a loopback port of its own keeps tests apart.
        let api_https = if extra.contains(&"--api-https") {
            vec![]
        } else {
            vec![
                "--api-https".to_owned(),
                format!("127.0.0.1:{}", free_port()),
            ]
        };
        let mut args: Vec<String> = [
            "serve",
            "--rtmp",
            &format!("127.0.0.1:{rtmp}"),
            "--http",
            &format!("127.0.0.1:{http}"),
            "--driver",
            driver,
            "--workers",
            "2",
            "--api",
            &format!("127.0.0.1:{api}"),
        ]
        .map(str::to_owned)
        .to_vec();
        args.extend(api_https);
        args.extend(["--data-dir".to_owned(), data.to_str().unwrap().to_owned()]);
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        let child = spawn_server(&args, &env, &log, false);
        let s = Server {
            child,
            rtmp,
            http,
            api,
            log,
            data,
            args,
            env,
        };
        s.wait_listening();
        s
    }

    /// Kills the server and starts it again with the same ports, arguments and data (its log
    /// goes on in the same file).
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn_server(&self.args, &self.env, &self.log, true);
        // A killed process's io_uring listeners can outlive it for a moment (the kernel tears
        // the ring down asynchronously) and take connections that are then reset: wait for
        // an answer from the new process, not just a connection.
        let deadline = Instant::now() + Duration::from_secs(60);
        while http_get(self.http, "/api/streams", Duration::from_secs(5))
            .map_or(true, |r| r.status != 200)
        {
            assert!(
                Instant::now() < deadline,
                "server did not restart: {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_listening(&self) {
        // Generous: under a coverage tracer (ptrace) on a busy machine a start took over 20 s.
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", self.http)).is_err() {
            assert!(
                Instant::now() < deadline,
                "server did not start: {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn rtmp_url(&self, name: &str) -> String {
        format!("rtmp://127.0.0.1:{}/live/{name}", self.rtmp)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http)
    }

    pub fn get(&self, path: &str) -> Resp {
        self.get_with(path, &[])
    }

    /// `GET path` with extra request headers.
    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        http_get_with(self.http, path, headers, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("GET {path}: {e}; server log:\n{}", self.logs()))
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the stream's media playlist lists at least one complete segment; returns
    /// the media playlist path (with the stream instance).
    pub fn wait_live(&self, name: &str, timeout: Duration) -> String {
        self.wait_live_with(name, "", timeout)
    }

    /// [`Server::wait_live`] with `query` (e.g. `?token=...`) on the multivariant playlist.
    pub fn wait_live_with(&self, name: &str, query: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.get(&format!("/live/{name}/index.m3u8{query}"));
            if r.status == 200 {
                let text = r.text();
                let uri = text.lines().last().unwrap().to_owned();
                let path = format!("/live/{name}/{uri}");
                let pl = self.get(&path);
                if pl.status == 200 && pl.text().contains("#EXTINF") {
                    return path;
                }
            }
            assert!(
                Instant::now() < deadline,
                "stream {name} did not go live; server log:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Tests leave no files behind (a failing test has printed the log by now).
        let _ = std::fs::remove_file(&self.log);
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// ffmpeg publishing a synthetic 30 fps picture and a sine tone for `secs` seconds.
pub fn ffmpeg_publish(url: &str, secs: u32, size: &str) -> Child {
    ffmpeg_publish_gop(url, secs, size, 60)
}

/// [`ffmpeg_publish`] with a keyframe every `gop` frames (30 fps).
pub fn ffmpeg_publish_gop(url: &str, secs: u32, size: &str, gop: u32) -> Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re"])
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size={size}:rate=30"),
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &secs.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-tune",
            "zerolatency",
        ])
        .args([
            "-g",
            &gop.to_string(),
            "-b:v",
            "1M",
            "-c:a",
            "aac",
            "-b:a",
            "96k",
        ])
        .args(["-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg is installed (scripts/setup.sh)")
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub chunked: bool,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A bearer token for `user` from `zerocast token`, signed with the data dir's secret.
/// One browser playback at a time within a test binary: a browser, an encoder and a server
/// each want a core, and this machine class has two; parallel runs would measure the machine,
/// not the server.
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn user_token(data: &std::path::Path, user: &str) -> String {
    user_token_for(data, user, "1h")
}

/// A token for `user` valid for `ttl` (`30s`, `90m`, …).
pub fn user_token_for(data: &std::path::Path, user: &str, ttl: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_zerocast"))
        .args(["token", "--user", user, "--ttl", ttl, "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// One request with a bearer token and an optional JSON body, on a fresh connection.
pub fn api_call(port: u16, method: &str, path: &str, token: &str, body: Option<&str>) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the API");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    read_response(&mut BufReader::new(s)).expect("API response")
}

/// Reserves `name` as a private stream of a new user through the social API; returns its
/// stream key and a playback token for it.
pub fn private_stream(server: &Server, name: &str) -> (String, String) {
    let owner = user_token(&server.data, &uuid::Uuid::new_v4().to_string());
    let key = reserve_stream(server, &owner, name, true);
    let path = format!("/api/v1/streams/{name}/playback-token");
    let r = api_call(server.api, "POST", &path, &owner, Some("{}"));
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    (key, v["token"].as_str().unwrap().to_owned())
}

/// Reserves stream `name` for the owner of `token` (`POST /api/v1/streams`); its key.
pub fn reserve_stream(server: &Server, token: &str, name: &str, private: bool) -> String {
    let r = api_call(
        server.api,
        "POST",
        "/api/v1/streams",
        token,
        Some(&format!(r#"{{"name":"{name}","private":{private}}}"#)),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        v["obs_stream_key"].as_str().unwrap(),
        format!("{name}?key={}", v["key"].as_str().unwrap())
    );
    v["key"].as_str().unwrap().to_owned()
}

/// Sets the display name of the user of `token` (`PUT /api/v1/users/me/profile`).
pub fn set_display_name(server: &Server, token: &str, name: &str) {
    let body = serde_json::json!({ "display_name": name }).to_string();
    let r = api_call(
        server.api,
        "PUT",
        "/api/v1/users/me/profile",
        token,
        Some(&body),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

/// One GET on a fresh connection; decodes Content-Length and chunked bodies.
pub fn http_get(port: u16, path: &str, timeout: Duration) -> std::io::Result<Resp> {
    http_get_with(port, path, &[], timeout)
}

/// `GET path` with extra request headers.
pub fn http_get_with(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(timeout))?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Connection: close\r\n\r\n"
    )?;
    read_response(&mut BufReader::new(s))
}

pub fn read_response(r: &mut impl BufRead) -> std::io::Result<Resp> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    let chunked = get("transfer-encoding").is_some_and(|v| v.contains("chunked"));
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let n = usize::from_str_radix(line.trim(), 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
            if n == 0 {
                line.clear();
                r.read_line(&mut line)?;
                break;
            }
            let start = body.len();
            body.resize(start + n, 0);
            r.read_exact(&mut body[start..])?;
            line.clear();
            r.read_line(&mut line)?;
        }
    } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    }
    Ok(Resp {
        status,
        headers,
        body,
        chunked,
    })
}

/// Runs ffprobe counting decoded frames per stream; returns (codec, frames) pairs and stderr.
pub fn ffprobe_count(url: &str) -> (Vec<(String, u64)>, String) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames"])
        .args(["-show_entries", "stream=codec_name,nb_read_frames"])
        .args(["-of", "csv=p=0", url])
        .output()
        .expect("ffprobe is installed (scripts/setup.sh)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let streams = stdout
        .lines()
        .filter_map(|l| {
            let (codec, n) = l.split_once(',')?;
            Some((codec.to_owned(), n.trim().parse().ok()?))
        })
        .collect();
    (streams, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Publishes an FLV file's tags over RTMP in real time (like `ffmpeg -re -c copy`), with
/// rml_rtmp's client session. Used for captures Debian's ffmpeg cannot demux (Enhanced FLV).
pub fn publish_flv(port: u16, name: &str, path: &std::path::Path) -> Result<(), String> {
    publish_flv_looped(port, name, path, 1)
}

/// [`publish_flv`], the capture's media sent `loops` times in one publish, as one stream: each
/// pass after the first is shifted by the capture's length (its last tag of each kind plus
/// that kind's last step) and leaves out the codec configuration (sequence headers, Enhanced
/// RTMP metadata); a sequence end is sent only at the very end. For a capture that starts
/// on a keyframe, like those in `testdata/`.
pub fn publish_flv_looped(
    port: u16,
    name: &str,
    path: &std::path::Path,
    loops: u32,
) -> Result<(), String> {
    use bytes::Bytes;
    use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
    use rml_rtmp::sessions::{
        ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
        PublishRequestType,
    };
    use rml_rtmp::time::RtmpTimestamp;

    let flv = std::fs::read(path).map_err(|e| e.to_string())?;
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut hs = Handshake::new(PeerType::Client);
    s.write_all(&hs.generate_outbound_p0_and_p1().unwrap())
        .unwrap();
    let mut buf = [0u8; 8192];
    let leftover = loop {
        let n = s.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed during handshake".into());
        }
        match hs.process_bytes(&buf[..n]).map_err(|e| format!("{e:?}"))? {
            HandshakeProcessResult::InProgress { response_bytes } => {
                s.write_all(&response_bytes).unwrap()
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                s.write_all(&response_bytes).unwrap();
                break remaining_bytes;
            }
        }
    };
    let (mut session, initial) = ClientSession::new(ClientSessionConfig::new()).unwrap();
    let send = |s: &mut TcpStream, r: ClientSessionResult| {
        if let ClientSessionResult::OutboundResponse(p) = r {
            s.write_all(&p.bytes).unwrap();
        }
    };
    for r in initial {
        send(&mut s, r);
    }
    send(&mut s, session.request_connection("live".into()).unwrap());
    let mut pending = leftover;
    let mut published = false;
    let mut requested = false;
    while !published {
        let results = session
            .handle_input(&pending)
            .map_err(|e| format!("{e:?}"))?;
        for r in results {
            match r {
                ClientSessionResult::RaisedEvent(ClientSessionEvent::ConnectionRequestAccepted) => {
                    requested = true;
                }
                ClientSessionResult::RaisedEvent(ClientSessionEvent::PublishRequestAccepted) => {
                    published = true;
                }
                ClientSessionResult::RaisedEvent(e) => {
                    if format!("{e:?}").contains("Rejected") {
                        return Err(format!("refused: {e:?}"));
                    }
                }
                other => send(&mut s, other),
            }
        }
        if requested {
            requested = false;
            send(
                &mut s,
                session
                    .request_publishing(name.into(), PublishRequestType::Live)
                    .unwrap(),
            );
        }
        if !published {
            let n = s.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed before publish was accepted".into());
            }
            pending = buf[..n].to_vec();
        }
    }
    // Tags: 11-byte header (type, 24-bit size, 24+8-bit timestamp, stream id), body, 4-byte size.
    let mut tags = Vec::new();
    let mut pos = 13;
    while pos + 11 <= flv.len() {
        let kind = flv[pos];
        let size = u32::from_be_bytes([0, flv[pos + 1], flv[pos + 2], flv[pos + 3]]) as usize;
        let ts = u32::from_be_bytes([flv[pos + 7], flv[pos + 4], flv[pos + 5], flv[pos + 6]]);
        if kind == 8 || kind == 9 {
            tags.push((kind, ts, &flv[pos + 11..pos + 11 + size]));
        }
        pos += 11 + size + 4;
    }
    // The capture's length: past the last tag of each kind by that kind's last step.
    let end_of = |kind: u8| {
        let ts: Vec<u32> = tags.iter().filter(|t| t.0 == kind).map(|t| t.1).collect();
        match ts[..] {
            [.., a, b] => b + (b - a),
            [b] => b,
            [] => 0,
        }
    };
    let length = end_of(8).max(end_of(9));
    let start = Instant::now();
    for pass in 0..loops {
        for &(kind, ts, body) in &tags {
            let config = codec_config(kind, body);
            let end = kind == 9 && video_sequence_end(body);
            if (pass > 0 && config) || (end && pass + 1 < loops) {
                continue;
            }
            let ts = ts + pass * length;
            let due = Duration::from_millis(u64::from(ts));
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
            let t = RtmpTimestamp::new(ts);
            let body = Bytes::copy_from_slice(body);
            let r = match kind {
                8 => session.publish_audio_data(body, t, false),
                _ => session.publish_video_data(body, t, false),
            };
            send(&mut s, r.map_err(|e| format!("{e:?}"))?);
        }
    }
    Ok(())
}

/// An FLV audio or video tag body carrying codec configuration rather than media: an AAC or
/// AVC sequence header, an Enhanced RTMP SequenceStart or Metadata packet.
fn codec_config(kind: u8, body: &[u8]) -> bool {
    match (kind, body) {
        // AAC (sound format 10), AACPacketType 0.
        (8, [b0, 0, ..]) => b0 >> 4 == 10,
        // Enhanced RTMP (IsExHeader): PacketType 0 SequenceStart, 4 Metadata.
        (9, [b0, ..]) if b0 & 0x80 != 0 => matches!(b0 & 0x0f, 0 | 4),
        // Legacy AVC (codec 7), AVCPacketType 0.
        (9, [b0, 0, ..]) => b0 & 0x0f == 7,
        _ => false,
    }
}

/// An FLV video tag body ending the sequence (Enhanced RTMP SequenceEnd, AVC end of sequence).
fn video_sequence_end(body: &[u8]) -> bool {
    match body {
        [b0, ..] if b0 & 0x80 != 0 => b0 & 0x0f == 2,
        [b0, 2, ..] => b0 & 0x0f == 7,
        _ => false,
    }
}

/// An origin behind a cache (docs/deployment.md): every connection comes from the cache's
/// address, so the per-address cap is off (the cache caps its own clients). With the default
/// cap of 256, nginx's burst of first playlist loads (`no-cache`: each goes through) opened
/// more upstream connections than that, and the ones over it became 502s.
pub const BEHIND_A_CACHE: &[&str] = &["--max-connections-per-ip", "0"];

/// nginx (Debian `nginx-light`, installed by scripts/setup.sh) as a caching reverse proxy in
/// front of a zerocast's HTTP port, configured the way docs/deployment.md shows: the cache key
/// keeps the query (`_HLS_msn`, `_HLS_part`, `_HLS_skip`), `proxy_cache_lock` merges the
/// requests for one key, and zerocast's `Cache-Control` decides what is kept and how long.
/// Stopped (SIGTERM: the master stops its workers) and its directory removed on drop.
pub struct NginxCache {
    child: Child,
    pub port: u16,
    dir: TempDir,
}

impl NginxCache {
    pub fn start(origin_port: u16) -> NginxCache {
        let dir = TempDir::new("nginx-cache");
        let port = free_port();
        let d = dir.0.display();
        // nginx's workers drop to `nobody` when the master runs as root: they write the cache.
        for sub in ["", "/cache", "/tmp"] {
            let p = format!("{d}{sub}");
            std::fs::create_dir_all(&p).unwrap();
            set_mode(&p, 0o777);
        }
        let conf = format!(
            r#"pid {d}/nginx.pid;
error_log {d}/error.log warn;
daemon off;
worker_processes 1;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp;
  fastcgi_temp_path {d}/tmp; uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;
  proxy_cache_path {d}/cache levels=1:2 keys_zone=live:10m max_size=512m inactive=60s use_temp_path=off;
  upstream zerocast {{ server 127.0.0.1:{origin_port}; keepalive 32; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://zerocast;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache live;
      proxy_cache_key $scheme$proxy_host$request_uri;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 10s;
      proxy_cache_lock_age 10s;
      proxy_read_timeout 20s;
      add_header X-Cache-Status $upstream_cache_status always;
    }}
  }}
}}
"#
        );
        let path = dir.0.join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        // Debian puts it in /usr/sbin, which an unprivileged user's PATH may lack.
        let bin = if std::path::Path::new("/usr/sbin/nginx").exists() {
            "/usr/sbin/nginx"
        } else {
            "nginx"
        };
        let child = Command::new(bin)
            .args(["-c", path.to_str().unwrap(), "-p", dir.0.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.0.join("stderr.log")).unwrap())
            .spawn()
            .expect("nginx is installed (scripts/setup.sh installs nginx-light)");
        let n = NginxCache { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start: {}",
                n.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        n
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn logs(&self) -> String {
        ["stderr.log", "error.log"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.0.join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for NginxCache {
    fn drop(&mut self) {
        // SAFETY: a signal to a child process we own.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

fn set_mode(path: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The sum of a Prometheus counter's series in `text` whose name and labels start with
/// `series` (e.g. `zerocast_http_request_duration_seconds_count{kind="part"}`).
pub fn metric_sum(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// What a crowd of [`llhls_viewer`]s saw.
#[derive(Default)]
pub struct Tally {
    /// Blocking playlist reloads answered.
    pub reloads: std::sync::atomic::AtomicU64,
    /// Answers to a blocking reload that do not list the part asked for.
    pub stale: std::sync::atomic::AtomicU64,
    pub parts: std::sync::atomic::AtomicU64,
    /// Blocking reloads answered 503 (the part did not come in time), then asked again.
    pub retries: std::sync::atomic::AtomicU64,
    /// Viewers that saw an `EXT-X-DISCONTINUITY` appear after they started.
    pub discontinuities: std::sync::atomic::AtomicU64,
    /// Anything else but a 200, or a broken connection.
    pub errors: std::sync::atomic::AtomicU64,
    /// Viewers that received at least one part.
    pub served: std::sync::atomic::AtomicU64,
    /// Viewers that received parts after they saw a discontinuity.
    pub continued: std::sync::atomic::AtomicU64,
}

/// One LL-HLS viewer on one keep-alive connection, doing what a player does until `end`: the
/// media playlist, then a blocking reload for the next part and every part the answer
/// announces. A 503 (the part did not arrive within the server's block limit) is asked again,
/// as players do; anything else but a 200 is an error and ends the viewer.
#[allow(clippy::print_stdout)] // a test's report
pub fn llhls_viewer(port: u16, media: &str, end: Instant, t: &Tally) {
    use std::sync::atomic::Ordering;
    use zerocast_packager::check;
    let run = || -> Result<(), String> {
        let s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(15)))
            .map_err(|e| e.to_string())?;
        let mut w = s.try_clone().map_err(|e| e.to_string())?;
        let mut r = BufReader::new(s);
        let mut get = |path: &str| -> Result<Resp, String> {
            write!(w, "GET {path} HTTP/1.1\r\nHost: viewer\r\n\r\n").map_err(|e| e.to_string())?;
            read_response(&mut r).map_err(|e| format!("{path}: {e}"))
        };
        let ok = |resp: Resp, path: &str| -> Result<Resp, String> {
            if resp.status != 200 {
                return Err(format!("{path}: status {} {}", resp.status, resp.text()));
            }
            Ok(resp)
        };
        let base = media.rsplit_once('/').map_or("", |(b, _)| b).to_owned();
        let first = ok(get(media)?, media)?;
        let mut pl = check::parse(&first.text()).map_err(|e| e.to_string())?;
        let count_breaks =
            |pl: &check::ParsedPlaylist| pl.segments.iter().filter(|s| s.discontinuity).count();
        let breaks_at_start = count_breaks(&pl);
        let mut seen = pl.last_part();
        let (mut got_parts, mut broke, mut after_break) = (false, false, false);
        while Instant::now() < end {
            let Some((msn, part)) = pl.next_part() else {
                // A stream that has not made its first part yet: look again, as players do.
                std::thread::sleep(Duration::from_millis(100));
                pl = check::parse(&ok(get(media)?, media)?.text()).map_err(|e| e.to_string())?;
                continue;
            };
            let q = format!("{media}?_HLS_msn={msn}&_HLS_part={part}");
            let resp = get(&q)?;
            if resp.status == 503 {
                t.retries.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            pl = check::parse(&ok(resp, &q)?.text()).map_err(|e| e.to_string())?;
            t.reloads.fetch_add(1, Ordering::Relaxed);
            if pl.last_part().is_none_or(|last| last < (msn, part)) {
                t.stale.fetch_add(1, Ordering::Relaxed);
            }
            if !broke && count_breaks(&pl) > breaks_at_start {
                broke = true;
                t.discontinuities.fetch_add(1, Ordering::Relaxed);
            }
            let fresh: Vec<String> = pl
                .segments
                .iter()
                .flat_map(|s| s.parts.iter().enumerate().map(move |(i, p)| (s.msn, i, p)))
                .filter(|(m, i, _)| seen.is_none_or(|s| (*m, *i) > s))
                .map(|(_, _, p)| p.uri.clone())
                .collect();
            seen = pl.last_part();
            for uri in fresh {
                let path = format!("{base}/{uri}");
                let part = ok(get(&path)?, &path)?;
                if part.body.is_empty() {
                    return Err(format!("{uri}: empty"));
                }
                t.parts.fetch_add(1, Ordering::Relaxed);
                got_parts = true;
                after_break |= broke;
            }
        }
        if got_parts {
            t.served.fetch_add(1, Ordering::Relaxed);
        }
        if after_break {
            t.continued.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    };
    if let Err(e) = run() {
        if t.errors.fetch_add(1, Ordering::Relaxed) < 3 {
            println!("viewer error: {e}");
        }
    }
}

/// `n` [`llhls_viewer`]s of `media` on `port` until `end`, on threads of their own.
pub fn llhls_crowd(
    n: usize,
    port: u16,
    media: &str,
    end: Instant,
    t: &std::sync::Arc<Tally>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..n)
        .map(|_| {
            let (t, media) = (t.clone(), media.to_owned());
            std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn(move || llhls_viewer(port, &media, end, &t))
                .unwrap()
        })
        .collect()
}

/// What reached a server, from its `/metrics`: blocking and plain playlist requests, part
/// requests, and the parts its streams made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestCounts {
    pub playlists: f64,
    pub parts: f64,
    pub made: f64,
}

impl RequestCounts {
    pub fn of(server: &Server) -> Self {
        let text = server.get("/metrics").text();
        let count = |kind: &str| {
            metric_sum(
                &text,
                &format!("zerocast_http_request_duration_seconds_count{{kind=\"{kind}\"}}"),
            )
        };
        Self {
            playlists: count("playlist"),
            parts: count("part"),
            made: metric_sum(&text, "zerocast_parts"),
        }
    }

    /// What happened between `before` and this.
    pub fn since(self, before: Self) -> Self {
        Self {
            playlists: self.playlists - before.playlists,
            parts: self.parts - before.parts,
            made: self.made - before.made,
        }
    }
}
