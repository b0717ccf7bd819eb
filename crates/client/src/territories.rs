//! Territories (SPEC §1): readable by every authenticated user.

use freshplan_api::territories::Territory;
use reqwest::Method;

use crate::{Client, Result};

/// The territories resource: [`Client::territories`].
#[derive(Debug, Clone)]
pub struct Territories {
    client: Client,
}

impl Territories {
    pub(crate) fn new(client: Client) -> Territories {
        Territories { client }
    }

    /// `GET /api/territories`: DE and CH.
    pub async fn list(&self) -> Result<Vec<Territory>> {
        let rb = self.client.request(Method::GET, &["api", "territories"]);
        crate::json(self.client.send(rb).await?).await
    }

    /// `GET /api/territories/{id}`; an unknown id is [`crate::Error::NotFound`].
    pub async fn get(&self, id: &str) -> Result<Territory> {
        let rb = self
            .client
            .request(Method::GET, &["api", "territories", id]);
        crate::json(self.client.send(rb).await?).await
    }
}
