//! A lead's timeline (SPEC §5): list it, log an activity.

use freshplan_api::activities::{Activity, ActivityCreate, ActivityPage};
use reqwest::Method;
use uuid::Uuid;

use crate::{Client, ETag, List, Result};

/// Paging of a sub-list: `page` (0-based) and `size` (1–200, default 20).
///
/// ```
/// use freshplan_client::activities::PageQuery;
///
/// let q = PageQuery::new().page(1).size(50);
/// assert_eq!((q.page_number(), q.page_size()), (1, Some(50)));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageQuery {
    page: u32,
    size: Option<u32>,
}

impl PageQuery {
    /// The first page of the default size.
    pub fn new() -> PageQuery {
        PageQuery::default()
    }

    /// The page (0-based).
    pub fn page(mut self, page: u32) -> PageQuery {
        self.page = page;
        self
    }

    /// The page size (1–200).
    pub fn size(mut self, size: u32) -> PageQuery {
        self.size = Some(size);
        self
    }

    /// The requested page.
    pub fn page_number(&self) -> u32 {
        self.page
    }

    /// The requested size (`None`: the service's default).
    pub fn page_size(&self) -> Option<u32> {
        self.size
    }
}

/// A logged activity and the lead's new ETag (logging changes the lead: its version, last
/// activity, maybe its status).
#[derive(Debug, Clone, PartialEq)]
pub struct Logged {
    /// The activity as recorded.
    pub activity: Activity,
    /// The lead's ETag after logging.
    pub lead_etag: ETag,
}

/// The timeline resource: [`Client::activities`].
#[derive(Debug, Clone)]
pub struct Activities {
    client: Client,
}

impl Activities {
    pub(crate) fn new(client: Client) -> Activities {
        Activities { client }
    }

    /// `GET /api/leads/{id}/activities`, newest first: await it for one page, or walk it with
    /// [`List::pages`] / [`List::items`].
    pub fn list(&self, lead_id: Uuid, query: PageQuery) -> List<ActivityPage> {
        let pairs = query
            .size
            .map(|s| vec![("size", s.to_string())])
            .unwrap_or_default();
        List::new(
            self.client.clone(),
            vec![
                "api".into(),
                "leads".into(),
                lead_id.to_string(),
                "activities".into(),
            ],
            pairs,
            query.page,
        )
    }

    /// `POST /api/leads/{id}/activities`: a user activity (`CALL`, `NOTE`, …; system types are
    /// 422). Every type but `NOTE` is a meaningful contact (SPEC §5).
    pub async fn log(&self, lead_id: Uuid, body: &ActivityCreate) -> Result<Logged> {
        let rb = self
            .client
            .request(
                Method::POST,
                &["api", "leads", &lead_id.to_string(), "activities"],
            )
            .json(body);
        let (activity, lead_etag) = crate::versioned::<Activity>(self.client.send(rb).await?)
            .await?
            .into_parts();
        Ok(Logged {
            activity,
            lead_etag,
        })
    }
}
