//! `/events/...`: server-sent events that keep a page live. Each stream
//! renders its page's changing part (`#live`) once a second and sends it
//! when it changed; the page's script swaps it in. At most
//! [`STREAMS_MAX`] streams are open at once (more get 503), and every
//! stream ends when the master begins to shut down.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures_util::stream::{self, Stream, StreamExt};
use maud::Markup;
use tokio::sync::OwnedSemaphorePermit;

use super::Http;
use super::api;
use super::error::HttpError;
use super::pages;
use super::query::Params;
use crate::runtime::Master;

/// Live-update streams open at once, at most.
pub const STREAMS_MAX: usize = 256;
/// How often a stream looks at the state.
const RENDER_EVERY: Duration = Duration::from_secs(1);

pub fn routes() -> Router<Http> {
    Router::new()
        .route("/events/pipelines", get(pipelines))
        .route("/events/pipelines/{id}", get(pipeline))
        .route("/events/workers", get(workers))
}

/// Renders a page's live part, or None once it cannot be (the pipeline
/// was deleted, the master is stopping): the stream then ends.
type Render = Arc<
    dyn Fn(Arc<Master>) -> futures_util::future::BoxFuture<'static, Option<Markup>> + Send + Sync,
>;

fn slot(http: &Http) -> Result<OwnedSemaphorePermit, HttpError> {
    Arc::clone(&http.streams)
        .try_acquire_owned()
        .map_err(|_| HttpError::unavailable("too many live pages are open; reload later"))
}

async fn pipelines(
    State(http): State<Http>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, HttpError> {
    let (filter, offset, limit) = api::pipeline_query(Params(params))?;
    let permit = slot(&http)?;
    let render: Render = Arc::new(move |master| {
        let filter = filter.clone();
        Box::pin(async move {
            let page = api::pipeline_page(&master, filter.clone(), offset, limit)
                .await
                .ok()?;
            Some(pages::pipelines_live(&page, &filter, limit))
        })
    });
    Ok(live(http.master, permit, render))
}

async fn pipeline(
    State(http): State<Http>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, HttpError> {
    // Unknown ids are refused before a stream opens.
    api::pipeline_view(&http.master, &id).await?;
    let permit = slot(&http)?;
    let render: Render = Arc::new(move |master| {
        let id = id.clone();
        Box::pin(async move {
            let view = api::pipeline_view(&master, &id).await.ok()?;
            Some(pages::pipeline_live(&view))
        })
    });
    Ok(live(http.master, permit, render))
}

async fn workers(
    State(http): State<Http>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, HttpError> {
    let params = Params(params).only(&["page_token"])?;
    let token = params.text("page_token").unwrap_or_default().to_string();
    let permit = slot(&http)?;
    let render: Render = Arc::new(move |master| {
        let token = token.clone();
        Box::pin(async move {
            let (workers, next) = master.workers_page(&token, 100).await.ok()?;
            Some(pages::workers_live(&workers, &next))
        })
    });
    Ok(live(http.master, permit, render))
}

/// The stream: the first rendering at once, then each one that differs
/// from the last sent.
fn live(
    master: Arc<Master>,
    permit: OwnedSemaphorePermit,
    render: Render,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stopping = {
        let master = Arc::clone(&master);
        async move { master.shutting_down().await }
    };
    let state = (master, String::new(), true, permit);
    let events = stream::unfold(state, move |(master, last, first, permit)| {
        let render = Arc::clone(&render);
        async move {
            let mut first = first;
            loop {
                if !first {
                    tokio::time::sleep(RENDER_EVERY).await;
                }
                first = false;
                let html = render(Arc::clone(&master)).await?.into_string();
                if html != last {
                    let event = Event::default().data(html.clone());
                    return Some((Ok(event), (master, html, false, permit)));
                }
            }
        }
    })
    .take_until(stopping);
    Sse::new(events).keep_alive(KeepAlive::default())
}
