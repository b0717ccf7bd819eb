//! Leads (SPEC §4, §9, §13): list, create, read, merge-patch, soft-delete, reassign, stop and
//! resume the protection clock, export and erase the person's data.

use freshplan_api::leads::{
    BusinessType, ClockStop, Lead, LeadCreate, LeadPage, LeadPatch, LeadStatus, OwnerChange,
};
use freshplan_api::privacy::{ErasureRequest, ErasureRequestReason, PersonalDataExport};
use reqwest::Method;
use reqwest::header::{self, HeaderValue};
use uuid::Uuid;

use crate::{Client, Conditional, ETag, Error, List, Result, Versioned, wire_name};

/// A field to sort the lead list by (SPEC §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // the variants are the API's field names
pub enum SortField {
    CreatedAt,
    UpdatedAt,
    CompanyName,
    Status,
    RegisteredAt,
    LastActivityAt,
    EstimatedVolume,
    City,
}

impl SortField {
    /// The API's name of the field.
    pub fn as_str(self) -> &'static str {
        match self {
            SortField::CreatedAt => "createdAt",
            SortField::UpdatedAt => "updatedAt",
            SortField::CompanyName => "companyName",
            SortField::Status => "status",
            SortField::RegisteredAt => "registeredAt",
            SortField::LastActivityAt => "lastActivityAt",
            SortField::EstimatedVolume => "estimatedVolume",
            SortField::City => "city",
        }
    }
}

/// Ascending or descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// `asc`.
    Asc,
    /// `desc`.
    Desc,
}

/// The query of `GET /api/leads`: paging, sorting and filters. Unset parameters are not sent
/// (the service's defaults: page 0, size 20, `createdAt,asc`).
///
/// ```
/// use freshplan_client::api::leads::{BusinessType, LeadStatus};
/// use freshplan_client::leads::{LeadQuery, SortField};
///
/// let q = LeadQuery::new()
///     .page(2)
///     .size(50)
///     .sort_desc(SortField::RegisteredAt)
///     .status(LeadStatus::Active)
///     .status(LeadStatus::Reminder)
///     .territory("DE")
///     .business_type(BusinessType::Hotel)
///     .q("100%");
/// assert_eq!(
///     q.to_query_string(),
///     "page=2&size=50&sort=registeredAt%2Cdesc&status=ACTIVE&status=REMINDER&territory=DE&businessType=HOTEL&q=100%25"
/// );
/// assert_eq!(LeadQuery::new().to_query_string(), "");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeadQuery {
    page: u32,
    size: Option<u32>,
    sort: Option<(SortField, Direction)>,
    statuses: Vec<LeadStatus>,
    territory: Option<String>,
    owner_user_id: Option<String>,
    business_type: Option<BusinessType>,
    q: Option<String>,
    include_deleted: Option<bool>,
}

impl LeadQuery {
    /// No parameters: the first page of 20, oldest first.
    pub fn new() -> LeadQuery {
        LeadQuery::default()
    }

    /// The page (0-based; at most 1,000,000).
    pub fn page(mut self, page: u32) -> LeadQuery {
        self.page = page;
        self
    }

    /// The page size (1–200; default 20).
    pub fn size(mut self, size: u32) -> LeadQuery {
        self.size = Some(size);
        self
    }

    /// Sort by `field` in `direction`.
    pub fn sort(mut self, field: SortField, direction: Direction) -> LeadQuery {
        self.sort = Some((field, direction));
        self
    }

    /// Sort by `field`, ascending.
    pub fn sort_asc(self, field: SortField) -> LeadQuery {
        self.sort(field, Direction::Asc)
    }

    /// Sort by `field`, descending.
    pub fn sort_desc(self, field: SortField) -> LeadQuery {
        self.sort(field, Direction::Desc)
    }

    /// Only leads in this status; repeat for several (any of them). `DELETED` needs
    /// [`LeadQuery::include_deleted`] (admins).
    pub fn status(mut self, status: LeadStatus) -> LeadQuery {
        self.statuses.push(status);
        self
    }

    /// Only leads of this territory (`DE`, `CH`).
    pub fn territory(mut self, territory: impl Into<String>) -> LeadQuery {
        self.territory = Some(territory.into());
        self
    }

    /// Only leads this user owns.
    pub fn owner_user_id(mut self, owner: impl Into<String>) -> LeadQuery {
        self.owner_user_id = Some(owner.into());
        self
    }

    /// Only leads of this business type.
    pub fn business_type(mut self, business_type: BusinessType) -> LeadQuery {
        self.business_type = Some(business_type);
        self
    }

    /// A case-insensitive substring of company, contact, email or city (`%` and `_` are
    /// literal; at most 100 characters).
    pub fn q(mut self, q: impl Into<String>) -> LeadQuery {
        self.q = Some(q.into());
        self
    }

    /// List soft-deleted leads too (admins only).
    pub fn include_deleted(mut self, include: bool) -> LeadQuery {
        self.include_deleted = Some(include);
        self
    }

    /// The requested page.
    pub fn page_number(&self) -> u32 {
        self.page
    }

    /// The parameters besides `page`, in the order they are sent.
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        if let Some(size) = self.size {
            pairs.push(("size", size.to_string()));
        }
        if let Some((field, direction)) = self.sort {
            let direction = match direction {
                Direction::Asc => "asc",
                Direction::Desc => "desc",
            };
            pairs.push(("sort", format!("{},{direction}", field.as_str())));
        }
        for status in &self.statuses {
            pairs.push(("status", wire_name(status)));
        }
        if let Some(t) = &self.territory {
            pairs.push(("territory", t.clone()));
        }
        if let Some(o) = &self.owner_user_id {
            pairs.push(("ownerUserId", o.clone()));
        }
        if let Some(b) = &self.business_type {
            pairs.push(("businessType", wire_name(b)));
        }
        if let Some(q) = &self.q {
            pairs.push(("q", q.clone()));
        }
        if let Some(d) = self.include_deleted {
            pairs.push(("includeDeleted", d.to_string()));
        }
        pairs
    }

    /// The query string as sent (`page` only when not 0).
    pub fn to_query_string(&self) -> String {
        let mut out = reqwest::Url::parse("http://q/").expect("a static URL");
        {
            let mut q = out.query_pairs_mut();
            if self.page != 0 {
                q.append_pair("page", &self.page.to_string());
            }
            for (k, v) in self.pairs() {
                q.append_pair(k, &v);
            }
        }
        out.query().unwrap_or("").to_owned()
    }
}

/// The leads resource: [`Client::leads`].
#[derive(Debug, Clone)]
pub struct Leads {
    client: Client,
}

fn id_segment(id: Uuid) -> String {
    id.to_string()
}

impl Leads {
    pub(crate) fn new(client: Client) -> Leads {
        Leads { client }
    }

    /// `GET /api/leads`: await it for one page, or walk it with [`List::pages`] /
    /// [`List::items`]; [`List::conditional`] for the page's weak ETag and `If-None-Match`.
    pub fn list(&self, query: LeadQuery) -> List<LeadPage> {
        List::new(
            self.client.clone(),
            vec!["api".into(), "leads".into()],
            query.pairs(),
            query.page,
        )
    }

    /// `POST /api/leads`: the created lead and its ETag. A duplicate is
    /// [`Error::Duplicate`]; creating in a territory the caller does not work in is
    /// [`Error::Forbidden`].
    pub async fn create(&self, body: &LeadCreate) -> Result<Versioned<Lead>> {
        self.create_with(body, None).await
    }

    /// [`Leads::create`] with an `Idempotency-Key` (1–255 visible characters): the same key
    /// and body within 24 h answer the first response again (the same lead) instead of a
    /// duplicate; the same key with another body is 422 ([`Error::is_idempotency_key_reused`]).
    /// Use a fresh key (e.g. a UUID) per lead you mean to create, and the same one for retries.
    pub async fn create_idempotent(
        &self,
        body: &LeadCreate,
        idempotency_key: &str,
    ) -> Result<Versioned<Lead>> {
        self.create_with(body, Some(idempotency_key)).await
    }

    async fn create_with(&self, body: &LeadCreate, key: Option<&str>) -> Result<Versioned<Lead>> {
        let mut rb = self
            .client
            .request(Method::POST, &["api", "leads"])
            .json(body);
        if let Some(key) = key {
            let value = HeaderValue::from_str(key).map_err(|e| Error::InvalidHeader {
                name: "Idempotency-Key",
                message: e.to_string(),
            })?;
            rb = rb.header("Idempotency-Key", value);
        }
        crate::versioned(self.client.send(rb).await?).await
    }

    /// `GET /api/leads/{id}`: the lead and its strong ETag; [`Error::NotFound`] also for a lead
    /// the caller may not read.
    pub async fn get(&self, id: Uuid) -> Result<Versioned<Lead>> {
        let rb = self
            .client
            .request(Method::GET, &["api", "leads", &id_segment(id)]);
        crate::versioned(self.client.send(rb).await?).await
    }

    /// `GET /api/leads/{id}` with `If-None-Match`: [`Conditional::NotModified`] while the lead
    /// is still at `etag`.
    pub async fn get_if_none_match(&self, id: Uuid, etag: &ETag) -> Result<Conditional<Lead>> {
        let rb = self
            .client
            .request(Method::GET, &["api", "leads", &id_segment(id)])
            .header(header::IF_NONE_MATCH, etag.as_str());
        crate::conditional(self.client.send(rb).await?).await
    }

    /// `PATCH /api/leads/{id}` as a JSON merge patch (`application/merge-patch+json`): fields
    /// left `None` stay, `Some(None)` clears an optional one. `etag` is the version the patch
    /// was made for ([`ETag::any`] to patch whatever is current): a stale one is
    /// [`Error::PreconditionFailed`]. Answers the updated lead with its new ETag.
    pub async fn patch(&self, id: Uuid, etag: &ETag, patch: &LeadPatch) -> Result<Versioned<Lead>> {
        // The content type first: `json` keeps one that is set.
        let rb = self
            .client
            .request(Method::PATCH, &["api", "leads", &id_segment(id)])
            .header(header::CONTENT_TYPE, "application/merge-patch+json")
            .json(patch);
        let rb = crate::if_match(rb, Some(etag));
        crate::versioned(self.client.send(rb).await?).await
    }

    /// `DELETE /api/leads/{id}` (soft delete) at `etag`.
    pub async fn delete(&self, id: Uuid, etag: &ETag) -> Result<()> {
        let rb = self
            .client
            .request(Method::DELETE, &["api", "leads", &id_segment(id)]);
        self.client.send(crate::if_match(rb, Some(etag))).await?;
        Ok(())
    }

    /// `PUT /api/leads/{id}/owner` (managers, admins), at `if_match` when given.
    pub async fn reassign(
        &self,
        id: Uuid,
        change: &OwnerChange,
        if_match: Option<&ETag>,
    ) -> Result<Versioned<Lead>> {
        let rb = self
            .client
            .request(Method::PUT, &["api", "leads", &id_segment(id), "owner"])
            .json(change);
        crate::versioned(self.client.send(crate::if_match(rb, if_match)).await?).await
    }

    /// `POST /api/leads/{id}/clock/stop` (managers, admins), at `if_match` when given; an
    /// already stopped clock is [`Error::Conflict`].
    pub async fn stop_clock(
        &self,
        id: Uuid,
        stop: &ClockStop,
        if_match: Option<&ETag>,
    ) -> Result<Versioned<Lead>> {
        let rb = self
            .client
            .request(
                Method::POST,
                &["api", "leads", &id_segment(id), "clock", "stop"],
            )
            .json(stop);
        crate::versioned(self.client.send(crate::if_match(rb, if_match)).await?).await
    }

    /// `POST /api/leads/{id}/clock/resume` (managers, admins), at `if_match` when given.
    pub async fn resume_clock(&self, id: Uuid, if_match: Option<&ETag>) -> Result<Versioned<Lead>> {
        let rb = self.client.request(
            Method::POST,
            &["api", "leads", &id_segment(id), "clock", "resume"],
        );
        crate::versioned(self.client.send(crate::if_match(rb, if_match)).await?).await
    }

    /// `GET /api/leads/{id}/personal-data` (admins; managers for their territories): everything
    /// stored about the lead's person — the lead, the whole timeline, every mail, the consent
    /// ledger, the outbox events carrying its data (DSGVO Art. 15, 20). Audited by the service.
    pub async fn personal_data(&self, id: Uuid) -> Result<PersonalDataExport> {
        let rb = self.client.request(
            Method::GET,
            &["api", "leads", &id_segment(id), "personal-data"],
        );
        crate::json(self.client.send(rb).await?).await
    }

    /// `POST /api/leads/{id}/erasure` (admins) at `etag`, for a legal ground of DSGVO Art. 17(1):
    /// the erased lead and its ETag. Idempotent (an erased lead answers as it is);
    /// [`Error::Conflict`] while a follow-up run holds the lead (retry shortly).
    pub async fn erase(
        &self,
        id: Uuid,
        etag: &ETag,
        reason: ErasureRequestReason,
    ) -> Result<Versioned<Lead>> {
        let rb = self
            .client
            .request(Method::POST, &["api", "leads", &id_segment(id), "erasure"])
            .json(&ErasureRequest { reason });
        crate::versioned(self.client.send(crate::if_match(rb, Some(etag))).await?).await
    }
}
