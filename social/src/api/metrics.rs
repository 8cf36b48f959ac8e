//! `GET /metrics`: Prometheus text of this instance: sockets, slow-consumer closes, the
//! follower cache's counters.

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
    st.cache.stats().render_prometheus(&mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
