//! The audit log of personal-data processing (SPEC §13): `GET /api/audit`, admins only.

use freshplan_api::privacy::AuditPage;

use crate::{Client, List};

/// The audit log: [`Client::audit`].
///
/// ```no_run
/// # async fn run(client: freshplan_client::Client) -> freshplan_client::Result<()> {
/// let page = client.audit().list(0, 50).await?;
/// for entry in &page.data {
///     println!("{:?} by {} at {}", entry.action, entry.actor, entry.at);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Audit {
    client: Client,
}

impl Audit {
    pub(crate) fn new(client: Client) -> Audit {
        Audit { client }
    }

    /// `GET /api/audit`: exports, erasures and retention runs, newest first, without personal
    /// data; `size` 1–200. Await it for one page, or walk it with [`List::pages`].
    pub fn list(&self, page: u32, size: u32) -> List<AuditPage> {
        List::new(
            self.client.clone(),
            vec!["api".into(), "audit".into()],
            vec![("size", size.to_string())],
            page,
        )
    }
}
