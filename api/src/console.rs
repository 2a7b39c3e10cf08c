//! The web console: static pages embedded in the binary (no CDN, works offline), served at `/`
//! and `/console/…`. The files hold no data and need no credentials; every number they show is
//! fetched from the API with the token the user enters once (kept in the tab's session
//! storage), so the console sees exactly what the token may read.
//!
//! Charts use uPlot 1.6.32 (MIT, vendored from npm with its licence: `console/vendor/`).

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::{ApiError, AppState};

/// The embedded files: name, media type, bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../console/index.html"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../console/app.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../console/favicon.svg"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/app.js"),
    ),
    (
        "charts.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/charts.js"),
    ),
    (
        "incidents.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/incidents.js"),
    ),
    (
        "series.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/series.js"),
    ),
    (
        "scaling.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/scaling.js"),
    ),
    (
        "health.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/health.js"),
    ),
    (
        "vendor/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/vendor/uPlot.iife.min.js"),
    ),
    (
        "vendor/uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../console/vendor/uPlot.min.css"),
    ),
    (
        "vendor/LICENSE-uPlot.txt",
        "text/plain; charset=utf-8",
        include_bytes!("../console/vendor/LICENSE-uPlot.txt"),
    ),
];

/// Scripts and styles from this origin only; data from this origin only; no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The console's routes (merged into the API router when `server.console` is on).
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route(
            "/console/",
            get(|h: HeaderMap| async move { serve("index.html", &h) }),
        )
        .route(
            "/console/{*file}",
            get(|Path(file): Path<String>, h: HeaderMap| async move { serve(&file, &h) }),
        )
}

/// FNV-1a of the bytes: the file's ETag (the files change only with the binary).
fn etag(bytes: &[u8]) -> String {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("\"{h:016x}\"")
}

fn serve(name: &str, req: &HeaderMap) -> Response {
    let Some(&(_, media, bytes)) = FILES.iter().find(|f| f.0 == name) else {
        return ApiError::not_found(format!("no console file {name:?}")).into_response();
    };
    let tag = etag(bytes);
    let fresh = req
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, media)], bytes).into_response()
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    // Revalidate every time (the ETag makes that a 304): a new binary's pages show at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_is_served_with_its_type_and_a_stable_etag() {
        for (name, media, bytes) in FILES {
            assert!(!bytes.is_empty(), "{name}");
            let resp = serve(name, &HeaderMap::new());
            assert_eq!(resp.status(), StatusCode::OK, "{name}");
            assert_eq!(resp.headers()[header::CONTENT_TYPE], *media);
            let tag = resp.headers()[header::ETAG].clone();
            let mut again = HeaderMap::new();
            again.insert(header::IF_NONE_MATCH, tag);
            assert_eq!(serve(name, &again).status(), StatusCode::NOT_MODIFIED);
            assert!(
                resp.headers()[header::CONTENT_SECURITY_POLICY]
                    .to_str()
                    .is_ok_and(|c| c.contains("script-src 'self'"))
            );
        }
        assert_eq!(
            serve("../Cargo.toml", &HeaderMap::new()).status(),
            StatusCode::NOT_FOUND
        );
        // Every script and style the page names is embedded.
        let index = std::str::from_utf8(FILES[0].2).expect("utf-8");
        for r in index
            .split(['"', '\''])
            .filter(|s| [".js", ".css", ".svg"].iter().any(|e| s.ends_with(e)))
        {
            let r = r.trim_start_matches("./");
            assert!(
                FILES.iter().any(|f| f.0 == r),
                "index.html names {r}, not embedded"
            );
        }
    }

    #[test]
    fn the_console_names_every_reason_an_event_can_have() {
        // series.js keeps a short text per reason (`REASONS`); a reason added to the models
        // without one would show as its bare JSON name.
        let (_, _, js) = FILES.iter().find(|f| f.0 == "series.js").expect("embedded");
        let js = std::str::from_utf8(js).expect("utf-8");
        let table = js
            .split_once("const REASONS = {")
            .and_then(|(_, rest)| rest.split_once("};"))
            .map(|(table, _)| table)
            .expect("series.js has its REASONS table");
        for r in aiops_models::AlarmReason::ALL {
            let key = format!("\n  {}: \"", r.as_str());
            assert!(table.contains(&key), "series.js has no text for {r:?}");
        }
    }
}
