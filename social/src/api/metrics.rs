//! `GET /metrics`: Prometheus text of this instance: sockets, slow-consumer closes, refusals
//! by the per-user limits, the follower cache's counters.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::state::AppState;

pub(super) async fn render(State(st): State<Arc<AppState>>) -> Response {
    let mut out = String::with_capacity(4096);
    let _ = writeln!(out, "# TYPE zerocast_ws_connections gauge");
    let _ = writeln!(out, "zerocast_ws_connections {}", st.conns.connections());
    let _ = writeln!(out, "# TYPE zerocast_ws_slow_closes_total counter");
    let _ = writeln!(
        out,
        "zerocast_ws_slow_closes_total {}",
        st.conns.slow_closes.load(Ordering::Relaxed)
    );
    let r = &st.conns.refused;
    let _ = writeln!(out, "# HELP zerocast_ws_limit_total Frames, subscriptions or sockets refused by a per-user or per-socket limit.");
    let _ = writeln!(out, "# TYPE zerocast_ws_limit_total counter");
    for (limit, n) in [
        ("sockets_per_user", &r.sockets),
        ("subscriptions", &r.subscriptions),
        ("typing_rate", &r.typing_rate),
        ("typing_stranger", &r.typing_stranger),
    ] {
        let _ = writeln!(
            out,
            "zerocast_ws_limit_total{{limit=\"{limit}\"}} {}",
            n.load(Ordering::Relaxed)
        );
    }
    st.cache.stats().render_prometheus(&mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
