//! A paginated list request: awaited for one page, or walked as a stream of pages or items.

use std::future::IntoFuture;
use std::marker::PhantomData;

use freshplan_api::Paged;
use freshplan_api::leads::LeadPage;
use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream};
use futures_util::{StreamExt, TryStreamExt};
use reqwest::header;
use reqwest::{Method, Response};
use serde::de::DeserializeOwned;

use crate::{Client, Conditional, ETag, Result};

/// A list request (`GET /api/leads`, `GET /api/leads/{id}/activities`).
///
/// - `.await` (or [`List::send`]): the requested page.
/// - [`List::pages`]: a stream of pages from the requested one to the last.
/// - [`List::items`]: a stream of the items of those pages.
///
/// The walk is by page number, as the API pages: an item inserted or removed in an earlier page
/// while walking shifts the later ones (an item may then come twice or not at all). Sort by a
/// stable field (e.g. `createdAt`) when that matters.
///
/// ```no_run
/// use futures_util::TryStreamExt;
/// use freshplan_client::leads::{LeadQuery, SortField};
///
/// # async fn run(client: freshplan_client::Client) -> freshplan_client::Result<()> {
/// let query = LeadQuery::new().sort_asc(SortField::CreatedAt).size(200);
/// let page = client.leads().list(query.clone()).await?; // the first page
/// let mut leads = client.leads().list(query).items(); // every lead
/// while let Some(lead) = leads.try_next().await? {
///     println!("{} {}", lead.id, lead.company_name);
/// }
/// # Ok(())
/// # }
/// ```
#[must_use = "a list does nothing until awaited or streamed"]
pub struct List<P> {
    client: Client,
    segments: Vec<String>,
    /// The query without `page`.
    pairs: Vec<(&'static str, String)>,
    page: u32,
    _page: PhantomData<fn() -> P>,
}

impl<P> std::fmt::Debug for List<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("List")
            .field("path", &self.segments.join("/"))
            .field("query", &self.pairs)
            .field("page", &self.page)
            .finish()
    }
}

impl<P> List<P>
where
    P: Paged + DeserializeOwned + Send + 'static,
    P::Item: Send + 'static,
{
    pub(crate) fn new(
        client: Client,
        segments: Vec<String>,
        pairs: Vec<(&'static str, String)>,
        page: u32,
    ) -> List<P> {
        List {
            client,
            segments,
            pairs,
            page,
            _page: PhantomData,
        }
    }

    async fn fetch(&self, page: u32, if_none_match: Option<&ETag>) -> Result<Response> {
        let segments: Vec<&str> = self.segments.iter().map(String::as_str).collect();
        let mut url = self.client.url(&segments);
        {
            let mut q = url.query_pairs_mut();
            if page != 0 {
                q.append_pair("page", &page.to_string());
            }
            for (k, v) in &self.pairs {
                q.append_pair(k, v);
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        let mut rb = self.client.request_url(Method::GET, url);
        if let Some(etag) = if_none_match {
            rb = rb.header(header::IF_NONE_MATCH, etag.as_str());
        }
        self.client.send(rb).await
    }

    /// The requested page.
    pub async fn send(self) -> Result<P> {
        crate::json(self.fetch(self.page, None).await?).await
    }

    /// The pages from the requested one to the last (at least one, possibly empty); the first
    /// error ends the stream.
    pub fn pages(self) -> BoxStream<'static, Result<P>> {
        stream::try_unfold(Some(self), |list| async move {
            let Some(mut list) = list else {
                return Ok(None);
            };
            let page: P = crate::json(list.fetch(list.page, None).await?).await?;
            let more = !page.items().is_empty()
                && u64::from(page.page()).saturating_add(1) < page.total_pages();
            let next = if more {
                list.page += 1;
                Some(list)
            } else {
                None
            };
            Ok(Some((page, next)))
        })
        .boxed()
    }

    /// The items of [`List::pages`], in order.
    pub fn items(self) -> BoxStream<'static, Result<P::Item>> {
        self.pages()
            .map_ok(|page| stream::iter(page.into_items().into_iter().map(Ok)))
            .try_flatten()
            .boxed()
    }
}

impl List<LeadPage> {
    /// The requested page with its weak ETag; with `if_none_match`, [`Conditional::NotModified`]
    /// while the page (its data, filters and position) is unchanged.
    pub async fn conditional(self, if_none_match: Option<&ETag>) -> Result<Conditional<LeadPage>> {
        crate::conditional(self.fetch(self.page, if_none_match).await?).await
    }
}

impl<P> IntoFuture for List<P>
where
    P: Paged + DeserializeOwned + Send + 'static,
    P::Item: Send + 'static,
{
    type Output = Result<P>;
    type IntoFuture = BoxFuture<'static, Result<P>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}
