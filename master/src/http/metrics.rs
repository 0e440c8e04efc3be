//! `/metrics` in the Prometheus text format (OpenMetrics), and the tower
//! layer that times every gRPC call for `taskmaster_rpc_seconds`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{Request, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::Http;
use super::error::HttpError;
use crate::metrics::metrics;

pub fn routes() -> Router<Http> {
    Router::new().route("/metrics", get(scrape))
}

/// The counters, then the gauges read from the state in one short view.
async fn scrape(State(http): State<Http>) -> Result<impl IntoResponse, HttpError> {
    let counts = http
        .master
        .view(|core, now_ms| core.metric_counts(now_ms))
        .await?;
    let text = metrics().encode(&counts).map_err(|_| {
        HttpError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "encoding the metrics failed",
        )
    })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    ))
}

/// Times each gRPC call (to its reply headers) into the histogram of its
/// method: two clock reads and three atomic adds per call.
#[derive(Debug, Clone, Copy, Default)]
pub struct RpcTimingLayer;

impl<S> tower::Layer<S> for RpcTimingLayer {
    type Service = RpcTiming<S>;

    fn layer(&self, inner: S) -> RpcTiming<S> {
        RpcTiming { inner }
    }
}

#[derive(Debug, Clone)]
pub struct RpcTiming<S> {
    inner: S,
}

impl<S, B> tower::Service<Request<B>> for RpcTiming<S>
where
    S: tower::Service<Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let histogram = metrics().rpc_histogram(request.uri().path());
        let start = Instant::now();
        let call = self.inner.call(request);
        Box::pin(async move {
            let out = call.await;
            histogram.observe(start.elapsed());
            out
        })
    }
}
