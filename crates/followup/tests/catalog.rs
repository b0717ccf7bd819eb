//! Every event the domain produces validates against the machine-readable catalog
//! (`docs/events/catalog.json`, SPEC §7.2), and the catalog lists exactly the produced types.
//!
//! The lead events come from driving `LeadService` on the in-memory store through every use case
//! (create, update, status change, owner change, activity, protection reminder and expiry,
//! delete); the follow-up events from `FollowUpService` runs that send, skip and report.

use std::collections::BTreeSet;

use serde_json::Value;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use freshplan_followup::event::{FOLLOWUP_PROCESSED, FOLLOWUP_SENT, FOLLOWUP_SKIPPED};
use freshplan_followup::testing::InMemoryFollowUpStore;
use freshplan_followup::{Candidate, FollowUpConfig, FollowUpService};
use freshplan_kernel::testing::SequentialIds;
use freshplan_kernel::{Actor, CloudEvent, FixedClock, Role, TerritoryId, UserId};
use freshplan_leads::activity::ActivityType;
use freshplan_leads::events::LEAD_EVENT_TYPES;
use freshplan_leads::import::{ImportCandidate, ImportState, ImportSummary, InFileKeys};
use freshplan_leads::memory::{InMemoryLeadStore, block_on};
use freshplan_leads::model::{BusinessType, CompanyName};
use freshplan_leads::personal::ErasureReason;
use freshplan_leads::ports::LeadTx;
use freshplan_leads::protection::ProtectionPolicy;
use freshplan_leads::status::LeadStatus;
use freshplan_leads::{CreateLead, LeadData, LeadPatch, LeadService, LogActivity};

const T0: OffsetDateTime = datetime!(2026-03-02 09:00 UTC);

/// The catalog, parsed.
struct Catalog {
    envelope: jsonschema::Validator,
    events: Vec<(String, String, jsonschema::Validator)>,
}

impl Catalog {
    fn load() -> Catalog {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/events/catalog.json"
        );
        let text = std::fs::read_to_string(path).expect("docs/events/catalog.json exists");
        let doc: Value = serde_json::from_str(&text).expect("the catalog is JSON");
        let compile = |schema: &Value| {
            jsonschema::options()
                .should_validate_formats(true)
                .build(schema)
                .expect("every schema in the catalog compiles")
        };
        let envelope = compile(&doc["envelope"]);
        let events = doc["events"]
            .as_array()
            .expect("events is an array")
            .iter()
            .map(|e| {
                (
                    e["type"].as_str().expect("type").to_owned(),
                    e["source"].as_str().expect("source").to_owned(),
                    compile(&e["data"]),
                )
            })
            .collect();
        Catalog { envelope, events }
    }

    fn types(&self) -> BTreeSet<&str> {
        self.events.iter().map(|(t, _, _)| t.as_str()).collect()
    }

    /// Every violation of `event` against its catalog entry (empty when it conforms).
    fn violations(&self, event: &CloudEvent) -> Vec<String> {
        let json = serde_json::to_value(event).expect("a CloudEvent serialises");
        let describe = |e: jsonschema::ValidationError<'_>| format!("{e} at {}", e.instance_path());
        let mut errors: Vec<String> = self
            .envelope
            .iter_errors(&json)
            .map(|e| format!("envelope: {}", describe(e)))
            .collect();
        match self.events.iter().find(|(t, _, _)| *t == event.event_type) {
            None => errors.push(format!("{} is not in the catalog", event.event_type)),
            Some((_, source, schema)) => {
                if &event.source != source {
                    errors.push(format!("source {} instead of {source}", event.source));
                }
                errors.extend(schema.iter_errors(&event.data).map(describe));
            }
        }
        errors
    }

    fn check(&self, event: &CloudEvent) {
        let errors = self.violations(event);
        assert!(
            errors.is_empty(),
            "{} does not match the catalog: {errors:?}\n{}",
            event.event_type,
            event.data
        );
    }
}

fn u(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

fn lead_events() -> Vec<CloudEvent> {
    let store = InMemoryLeadStore::default();
    let clock = std::sync::Arc::new(FixedClock::new(T0));
    let svc = LeadService::new(
        store.clone(),
        clock.clone(),
        SequentialIds::default(),
        ProtectionPolicy::default(),
    );
    let rep = Actor::new(u("rep-1"), [Role::Sales], [TerritoryId::De]);
    let manager = Actor::new(u("manager-de"), [Role::Manager], [TerritoryId::De]);
    let create = |name: &str| {
        let mut data = LeadData::new(CompanyName::parse(name).unwrap(), "DE").unwrap();
        data.business_type = Some(BusinessType::Restaurant);
        block_on(svc.create(
            &rep,
            CreateLead {
                data,
                registered_at: None,
                idempotency: None,
            },
        ))
        .unwrap()
        .0
    };

    // created, updated, activity logged (+ FIRST_CONTACT status change), manual status change
    let a = create("Gasthaus Zur Post GmbH");
    block_on(svc.update(
        &rep,
        a.id,
        None,
        LeadPatch {
            city: Some(Some("Berlin".into())),
            ..LeadPatch::default()
        },
    ))
    .unwrap();
    for activity_type in [ActivityType::Note, ActivityType::Call] {
        block_on(svc.log_activity(
            &rep,
            a.id,
            LogActivity {
                activity_type,
                occurred_at: None,
                description: Some("Erstkontakt".into()),
            },
        ))
        .unwrap();
    }
    block_on(svc.update(
        &rep,
        a.id,
        None,
        LeadPatch {
            status: Some(LeadStatus::Qualified),
            ..LeadPatch::default()
        },
    ))
    .unwrap();
    // owner changed, deleted
    let b = create("Hotel Adler");
    block_on(svc.reassign(&manager, b.id, None, u("rep-2"))).unwrap();
    block_on(svc.delete(&manager, b.id, None)).unwrap();
    // protection: reminder at day 60, expiry after the grace period
    create("Kantine Süd");
    clock.set(T0 + Duration::days(60));
    block_on(svc.sweep(10)).unwrap();
    clock.set(T0 + Duration::days(70));
    block_on(svc.sweep(10)).unwrap();
    // erased (SPEC §13)
    let admin = Actor::new(u("admin"), [Role::Admin], []);
    block_on(svc.erase(&admin, b.id, None, ErasureReason::DataSubjectRequest)).unwrap();
    // an import of two rows (one created, one duplicate of an earlier line), then its end
    let import_id = Uuid::from_u128(0x1e);
    let rows: Vec<ImportCandidate> = ["Bistro Linde", "bistro  linde"]
        .into_iter()
        .zip(2..)
        .map(|(name, line)| ImportCandidate {
            line,
            data: LeadData::new(CompanyName::parse(name).unwrap(), "DE").unwrap(),
            registered_at: None,
            owner: None,
        })
        .collect();
    let in_file = InFileKeys::build(rows.iter().map(|r| (r.line, r.data.duplicate_keys())));
    let (tx, reports) = block_on(svc.import_batch(&rep, import_id, rows, &in_file, false)).unwrap();
    block_on(tx.commit()).unwrap();
    let summary = ImportSummary {
        id: import_id,
        state: ImportState::Succeeded,
        rows: 2,
        created: 1,
        refused: 0,
        duplicates: u32::try_from(reports.len() - 1).unwrap(),
        started_at: T0,
    };
    let mut events = store.events();
    events.push(summary.finished_event(Uuid::from_u128(0xe1), T0 + Duration::days(70)));
    events
}

fn candidate(n: u128, email: Option<&str>) -> Candidate {
    Candidate {
        lead_id: Uuid::from_u128(n),
        version: 2,
        territory: if n.is_multiple_of(2) {
            TerritoryId::De
        } else {
            TerritoryId::Ch
        },
        status: LeadStatus::Registered,
        clock_stopped: false,
        registered_at: T0,
        email: email.map(str::to_owned),
        email_consent: true,
        last_meaningful_contact_at: None,
        business_type: Some(BusinessType::Hotel),
        company_name: format!("Hotel {n}"),
        contact_person: Some("Anna Berger".into()),
        t3: None,
        t7: None,
    }
}

fn followup_events() -> Vec<CloudEvent> {
    let store = InMemoryFollowUpStore::with_candidates([
        candidate(1, Some("info@hotel1.ch")),
        candidate(2, None),
    ]);
    for (n, at) in [
        (1, datetime!(2026-03-05 09:00 UTC)),
        (2, datetime!(2026-03-09 09:00 UTC)),
    ] {
        let svc = FollowUpService::new(
            store.clone(),
            FixedClock::new(at),
            SequentialIds::default(),
            FollowUpConfig::new(
                "https://crm.example/unsubscribe",
                b"catalog-test-secret-catalog-test-secret".to_vec(),
            ),
        )
        .unwrap();
        let (_, processed) = block_on(svc.run(Uuid::from_u128(100 + n))).unwrap();
        store.append_event(processed);
    }
    store.events()
}

#[test]
fn every_produced_event_matches_the_catalog() {
    let catalog = Catalog::load();
    let events: Vec<CloudEvent> = lead_events().into_iter().chain(followup_events()).collect();
    for event in &events {
        catalog.check(event);
    }
    let produced: BTreeSet<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        produced,
        catalog.types(),
        "the scenario must produce every catalog type"
    );
}

#[test]
fn the_catalog_lists_exactly_the_types_the_code_knows() {
    let catalog = Catalog::load();
    let known: BTreeSet<&str> = LEAD_EVENT_TYPES
        .iter()
        .copied()
        .chain([FOLLOWUP_SENT, FOLLOWUP_SKIPPED, FOLLOWUP_PROCESSED])
        .collect();
    assert_eq!(catalog.types(), known);
}

#[test]
fn the_catalog_rejects_a_drifted_payload() {
    let catalog = Catalog::load();
    let mut event = lead_events().remove(0);
    assert_eq!(event.event_type, "lead.created.v1");
    assert!(catalog.violations(&event).is_empty());
    event.data["surprise"] = serde_json::json!(1);
    assert!(
        !catalog.violations(&event).is_empty(),
        "an unknown data field must fail validation"
    );
    let mut event = lead_events().remove(0);
    event.data["registeredAt"] = serde_json::json!("yesterday");
    assert!(
        !catalog.violations(&event).is_empty(),
        "a malformed date-time must fail validation"
    );
    event.data["registeredAt"] = serde_json::json!("2026-03-02T09:00:00Z");
    event.event_type = "lead.invented.v1".into();
    assert!(!catalog.violations(&event).is_empty());
}
