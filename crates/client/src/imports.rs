//! Imports of lead lists (`/api/leads/imports`, issue 15): a dry run's report, an import that
//! runs in the background, its state and its rows.

use std::time::Duration;

use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use uuid::Uuid;

use freshplan_api::imports::{ImportRowPage, ImportState, LeadImport};

use crate::{Client, Error, List, Result};

/// A CSV file to import: its bytes, and how to read them.
#[derive(Debug, Clone, Default)]
pub struct ImportFile {
    /// The file as saved (UTF-8 with or without BOM, or Windows-1252; `;` or `,`).
    pub bytes: Vec<u8>,
    /// The `charset` to declare (none: the service detects UTF-8 or Windows-1252).
    pub charset: Option<String>,
    /// Explicit `(column header, field)` pairs, the field by its API name (`companyName`, …).
    pub mapping: Vec<(String, String)>,
}

impl ImportFile {
    /// A file whose encoding and columns the service detects.
    pub fn new(bytes: impl Into<Vec<u8>>) -> ImportFile {
        ImportFile {
            bytes: bytes.into(),
            ..ImportFile::default()
        }
    }
}

/// Lead-list imports: [`Client::imports`].
///
/// ```no_run
/// # async fn run(client: freshplan_client::Client) -> freshplan_client::Result<()> {
/// use freshplan_client::imports::ImportFile;
/// let file = ImportFile::new(std::fs::read("messe.csv").unwrap());
/// let report = client.imports().dry_run(&file).await?;
/// println!("{} would be created, {} refused", report.created, report.refused);
/// let import = client.imports().start(&file, Some("internorga-2026")).await?;
/// let done = client
///     .imports()
///     .wait(import.id.unwrap(), std::time::Duration::from_millis(500))
///     .await?;
/// println!("{:?}: {} created", done.state, done.created);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Imports {
    client: Client,
}

impl Imports {
    pub(crate) fn new(client: Client) -> Imports {
        Imports { client }
    }

    fn post(
        &self,
        file: &ImportFile,
        dry_run: bool,
        key: Option<&str>,
    ) -> Result<reqwest::RequestBuilder> {
        let mut url = self.client.url(&["api", "leads", "imports"]);
        {
            let mut query = url.query_pairs_mut();
            if dry_run {
                query.append_pair("dryRun", "true");
            }
            for (header, field) in &file.mapping {
                query.append_pair("mapping", &format!("{header}:{field}"));
            }
        }
        let content_type = match &file.charset {
            Some(c) => format!("text/csv; charset={c}"),
            None => "text/csv".to_owned(),
        };
        let mut rb = self
            .client
            .request_url(Method::POST, url)
            .header(
                CONTENT_TYPE,
                HeaderValue::from_str(&content_type).map_err(|e| Error::InvalidHeader {
                    name: "Content-Type",
                    message: e.to_string(),
                })?,
            )
            .body(file.bytes.clone());
        if let Some(key) = key {
            let value = HeaderValue::from_str(key).map_err(|e| Error::InvalidHeader {
                name: "Idempotency-Key",
                message: e.to_string(),
            })?;
            rb = rb.header("Idempotency-Key", value);
        }
        Ok(rb)
    }

    /// `POST /api/leads/imports?dryRun=true`: every row through the rules of a single create,
    /// nothing written; the report (`state` `VALIDATED`, every refused and duplicate row).
    pub async fn dry_run(&self, file: &ImportFile) -> Result<LeadImport> {
        let rb = self.post(file, true, None)?;
        crate::json(self.client.send(rb).await?).await
    }

    /// `POST /api/leads/imports`: starts the import (202); it runs in the background. With an
    /// `idempotency_key`, sending the same file again answers the same import and imports
    /// nothing; another file with the key is 422.
    pub async fn start(
        &self,
        file: &ImportFile,
        idempotency_key: Option<&str>,
    ) -> Result<LeadImport> {
        let rb = self.post(file, false, idempotency_key)?;
        crate::json(self.client.send(rb).await?).await
    }

    /// `GET /api/leads/imports/{id}`: state, counts and the first 1,000 refused or duplicate
    /// rows.
    pub async fn get(&self, id: Uuid) -> Result<LeadImport> {
        let r = self
            .client
            .send(
                self.client
                    .request(Method::GET, &["api", "leads", "imports", &id.to_string()]),
            )
            .await?;
        crate::json(r).await
    }

    /// Polls [`Imports::get`] every `every` until the import is no longer `RUNNING`.
    pub async fn wait(&self, id: Uuid, every: Duration) -> Result<LeadImport> {
        loop {
            let import = self.get(id).await?;
            if import.state != ImportState::Running {
                return Ok(import);
            }
            tokio::time::sleep(every).await;
        }
    }

    /// `GET /api/leads/imports/{id}/rows`: the processed rows in line order (each created lead's
    /// id); `problems_only`: the refused and duplicate ones. Await it for one page, or walk it
    /// with [`List::pages`].
    pub fn rows(&self, id: Uuid, problems_only: bool, page: u32, size: u32) -> List<ImportRowPage> {
        let mut query = vec![("size", size.to_string())];
        if problems_only {
            query.push(("problemsOnly", "true".to_owned()));
        }
        List::new(
            self.client.clone(),
            vec![
                "api".into(),
                "leads".into(),
                "imports".into(),
                id.to_string(),
                "rows".into(),
            ],
            query,
            page,
        )
    }
}
