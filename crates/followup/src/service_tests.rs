//! Tests of [`FollowUpService`] on the in-memory store (and on mocks with feature `mocks`).

use std::collections::BTreeSet;

use proptest::prelude::*;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use freshplan_kernel::testing::SequentialIds;
use freshplan_kernel::{FixedClock, TerritoryId};
use freshplan_leads::activity::ActivityType;
use freshplan_leads::model::BusinessType;
use freshplan_leads::status::LeadStatus;

use crate::event::{FOLLOWUP_PROCESSED, FOLLOWUP_SENT, FOLLOWUP_SKIPPED};
use crate::plan::Candidate;
use crate::port::{FollowUpStore, FollowUpTx, StoreError};
use crate::service::{BatchError, ConfigError, FollowUpConfig, FollowUpService};
use crate::stage::{FollowUpStatus, SkipReason, Stage};
use crate::template::{RenderError, default_templates};
use crate::testing::{self, InMemoryFollowUpStore, block_on};
use crate::unsubscribe::UnsubscribeToken;

const SECRET: &[u8] = b"test-secret-test-secret-test-secret!";
/// Monday 2 March 2026, 10:00 Berlin.
const REGISTERED: OffsetDateTime = datetime!(2026-03-02 09:00 UTC);
/// Thursday 5 March 2026, 10:00 Berlin: T+3 due and in business hours.
const T3_DAY: OffsetDateTime = datetime!(2026-03-05 09:00 UTC);
/// Monday 9 March 2026, 10:00 Berlin: T+7 due and in business hours.
const T7_DAY: OffsetDateTime = datetime!(2026-03-09 09:00 UTC);

type Service = FollowUpService<InMemoryFollowUpStore, FixedClock, SequentialIds>;

fn lead(n: u128) -> Candidate {
    Candidate {
        lead_id: Uuid::from_u128(n),
        version: 2,
        territory: TerritoryId::De,
        status: LeadStatus::Registered,
        clock_stopped: false,
        registered_at: REGISTERED,
        email: Some(format!("lead{n}@example.de")),
        email_consent: true,
        last_meaningful_contact_at: None,
        business_type: Some(BusinessType::Hotel),
        company_name: format!("Hotel {n}"),
        contact_person: Some("Anna Berger".into()),
        t3: None,
        t7: None,
    }
}

fn config() -> FollowUpConfig {
    FollowUpConfig::new("https://crm.example/unsubscribe", SECRET.to_vec())
}

fn service(store: &InMemoryFollowUpStore, now: OffsetDateTime) -> Service {
    service_with(store, now, config())
}

fn service_with(
    store: &InMemoryFollowUpStore,
    now: OffsetDateTime,
    config: FollowUpConfig,
) -> Service {
    FollowUpService::new(
        store.clone(),
        FixedClock::new(now),
        SequentialIds::default(),
        config,
    )
    .unwrap()
}

fn run(service: &Service, run: u128) -> crate::event::RunReport {
    block_on(service.run(Uuid::from_u128(run))).unwrap().0
}

#[test]
fn t3_sent_writes_record_activity_mail_and_event_together() {
    let store = InMemoryFollowUpStore::with_candidates([lead(1)]);
    let svc = service(&store, T3_DAY);
    let (report, processed) = block_on(svc.run(Uuid::from_u128(42))).unwrap();
    assert_eq!(
        (report.t3_count, report.t7_count, report.skipped_count),
        (1, 0, 0)
    );
    assert_eq!(report.started_at, T3_DAY);

    let records = store.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].record.stage, Stage::T3);
    assert_eq!(records[0].record.status, FollowUpStatus::Sent);
    assert_eq!(records[0].record.processed_at, T3_DAY);
    assert_eq!(
        store.candidate(Uuid::from_u128(1)).unwrap().t3,
        Some(records[0].record)
    );

    let mails = store.mails();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(
        (mail.to.as_str(), mail.stage, mail.territory),
        ("lead1@example.de", Stage::T3, TerritoryId::De)
    );
    assert!(mail.subject.contains("Hotel 1"));
    assert!(mail.text.contains("Hotellerie"));
    let token = mail
        .text
        .split("token=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    assert_eq!(
        UnsubscribeToken::verify(token, SECRET),
        Ok(Uuid::from_u128(1))
    );
    // The link the bodies carry is the one the List-Unsubscribe header gets.
    assert_eq!(
        mail.unsubscribe_url,
        format!("https://crm.example/unsubscribe?token={token}")
    );
    assert!(mail.html.contains(&mail.unsubscribe_url));
    assert!(
        mail.text
            .contains(&freshplan_territory::Territory::get(TerritoryId::De).legal_footer())
    );

    let activities = store.activities();
    assert_eq!(activities.len(), 1);
    assert_eq!(activities[0].activity_type, ActivityType::FollowupSent);
    assert_eq!(activities[0].user_id.as_str(), "system");
    assert!(
        !activities[0].meaningful_contact,
        "an automatic mail is not a contact"
    );
    assert_eq!(activities[0].metadata["stage"], "T3");
    assert_eq!(
        activities[0].metadata["runId"],
        Uuid::from_u128(42).to_string()
    );
    assert_eq!(activities[0].metadata["mailId"], mail.id.to_string());

    let events = store.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, FOLLOWUP_SENT);
    assert_eq!(events[0].subject, Some(Uuid::from_u128(1).to_string()));
    assert_eq!(events[0].data["stage"], "T3");

    assert_eq!(processed.event_type, FOLLOWUP_PROCESSED);
    assert_eq!(processed.data["t3Count"], 1);
    assert_eq!(processed.subject, None);
}

#[test]
fn skips_are_recorded_logged_and_published_but_send_nothing() {
    let no_email = Candidate {
        email: None,
        ..lead(1)
    };
    let no_consent = Candidate {
        email_consent: false,
        ..lead(2)
    };
    let recent = Candidate {
        last_meaningful_contact_at: Some(T3_DAY - Duration::days(1)),
        ..lead(3)
    };
    let store = InMemoryFollowUpStore::with_candidates([no_email, no_consent, recent]);
    let report = run(&service(&store, T3_DAY), 1);
    assert_eq!(
        (report.t3_count, report.t7_count, report.skipped_count),
        (0, 0, 3)
    );
    assert!(store.mails().is_empty());
    let reasons: Vec<_> = store.records().iter().map(|r| r.record.reason).collect();
    assert_eq!(
        reasons,
        [
            Some(SkipReason::NoEmail),
            Some(SkipReason::NoConsent),
            Some(SkipReason::RecentContact)
        ]
    );
    assert!(
        store
            .activities()
            .iter()
            .all(|a| a.activity_type == ActivityType::FollowupSkipped)
    );
    let events = store.events();
    assert!(events.iter().all(|e| e.event_type == FOLLOWUP_SKIPPED));
    assert_eq!(events[1].data["reason"], "NO_CONSENT");
}

#[test]
fn the_timeline_says_in_german_which_stage_went_to_whom_or_why_it_was_skipped() {
    let no_consent = Candidate {
        email_consent: false,
        ..lead(2)
    };
    let no_email = Candidate {
        email: None,
        ..lead(3)
    };
    let recent = Candidate {
        last_meaningful_contact_at: Some(T3_DAY - Duration::days(1)),
        ..lead(4)
    };
    let store = InMemoryFollowUpStore::with_candidates([lead(1), no_consent, no_email, recent]);
    run(&service(&store, T3_DAY), 1);
    run(&service(&store, T7_DAY), 2);
    let descriptions: Vec<String> = store
        .activities()
        .into_iter()
        .filter_map(|a| a.description)
        .collect();
    assert_eq!(
        descriptions,
        [
            "Follow-up T+3 gesendet an lead1@example.de",
            "Follow-up T+3 übersprungen: keine Einwilligung in E-Mail-Kontakt",
            "Follow-up T+3 übersprungen: keine E-Mail-Adresse hinterlegt",
            "Follow-up T+3 übersprungen: kürzlicher persönlicher Kontakt",
            "Follow-up T+7 gesendet an lead1@example.de",
            "Follow-up T+7 übersprungen: keine Einwilligung in E-Mail-Kontakt",
            "Follow-up T+7 übersprungen: keine E-Mail-Adresse hinterlegt",
            "Follow-up T+7 übersprungen: kürzlicher persönlicher Kontakt",
        ]
    );
}

#[test]
fn ineligible_and_waiting_leads_are_left_alone() {
    let lost = Candidate {
        status: LeadStatus::Lost,
        ..lead(1)
    };
    let stopped = Candidate {
        clock_stopped: true,
        ..lead(2)
    };
    let deleted = Candidate {
        status: LeadStatus::Deleted,
        ..lead(3)
    };
    let fresh = Candidate {
        registered_at: T3_DAY,
        ..lead(4)
    };
    let store = InMemoryFollowUpStore::with_candidates([lost, stopped, deleted, fresh]);
    let report = run(&service(&store, T3_DAY), 1);
    assert_eq!(report.processed(), 0);
    assert!(
        store.records().is_empty() && store.events().is_empty() && store.activities().is_empty()
    );
}

#[test]
fn nothing_is_sent_outside_business_hours() {
    // Thursday 5 March 2026, 20:00 Berlin: due, but after hours.
    let store = InMemoryFollowUpStore::with_candidates([lead(1)]);
    let svc = service(&store, datetime!(2026-03-05 19:00 UTC));
    assert_eq!(run(&svc, 1).processed(), 0);
    svc.clock().set(datetime!(2026-03-06 07:00 UTC)); // Friday 08:00 Berlin
    assert_eq!(run(&svc, 2).t3_count, 1);
}

#[test]
fn t7_follows_in_a_later_run() {
    let store = InMemoryFollowUpStore::with_candidates([lead(1)]);
    let svc = service(&store, T3_DAY);
    assert_eq!(run(&svc, 1).t3_count, 1);
    svc.clock().set(T7_DAY - Duration::MINUTE);
    assert_eq!(run(&svc, 2).processed(), 0);
    svc.clock().set(T7_DAY);
    let report = run(&svc, 3);
    assert_eq!((report.t3_count, report.t7_count), (0, 1));
    let mails = store.mails();
    assert_eq!(mails[1].stage, Stage::T7);
    assert!(mails[1].subject.starts_with("20 % Rabatt"));
    assert!(mails[1].text.contains("1.000 EUR"));
    let keys: BTreeSet<_> = store.events().iter().map(|e| e.idempotencykey).collect();
    assert_eq!(
        keys.len(),
        2,
        "T3 and T7 events of one lead at one version have distinct keys"
    );
}

#[test]
fn one_run_processes_t3_and_then_t7_when_both_are_due() {
    let store = InMemoryFollowUpStore::with_candidates([lead(1)]);
    let svc = service(&store, T7_DAY + Duration::days(1));
    let report = run(&svc, 1);
    assert_eq!((report.t3_count, report.t7_count), (1, 1));
    let stages: Vec<_> = store.records().iter().map(|r| r.record.stage).collect();
    assert_eq!(stages, [Stage::T3, Stage::T7], "T+3 is recorded before T+7");
    assert_eq!(run(&svc, 2).processed(), 0);
}

#[test]
fn skipped_t3_still_allows_t7() {
    let store = InMemoryFollowUpStore::with_candidates([Candidate {
        email_consent: false,
        ..lead(1)
    }]);
    let svc = service(&store, T3_DAY);
    assert_eq!(run(&svc, 1).skipped_count, 1);
    store.update(Uuid::from_u128(1), |c| c.email_consent = true);
    svc.clock().set(T7_DAY);
    assert_eq!(run(&svc, 2).t7_count, 1);
}

#[test]
fn waiting_leads_never_starve_the_ones_behind_them() {
    // Saturday 1 August 2026 is no business day anywhere; use Friday 1 August 2025 instead:
    // a Swiss national holiday, a German working day.
    let friday = datetime!(2025-08-01 08:00 UTC); // 10:00 local
    let registered = friday - Duration::days(3);
    let swiss = (1..=5).map(|n| Candidate {
        territory: TerritoryId::Ch,
        registered_at: registered,
        ..lead(n)
    });
    let german = (6..=8).map(|n| Candidate {
        registered_at: registered,
        ..lead(n)
    });
    let store = InMemoryFollowUpStore::with_candidates(swiss.chain(german));
    let svc = service_with(
        &store,
        friday,
        FollowUpConfig {
            batch_size: 2,
            ..config()
        },
    );
    let report = run(&svc, 1);
    assert_eq!(
        report.t3_count, 3,
        "the German leads are processed behind five waiting Swiss ones"
    );
    assert!(
        store
            .records()
            .iter()
            .all(|r| r.territory == TerritoryId::De)
    );
}

#[test]
fn many_leads_are_processed_across_batches() {
    let store = InMemoryFollowUpStore::with_candidates((1..=25).map(lead));
    let svc = service_with(
        &store,
        T3_DAY,
        FollowUpConfig {
            batch_size: 4,
            ..config()
        },
    );
    assert_eq!(run(&svc, 1).t3_count, 25);
    assert_eq!(store.mails().len(), 25);
}

#[test]
fn a_batch_reports_what_it_claimed_sent_and_skipped_and_the_cursor_the_next_batch_starts_after() {
    let no_consent = Candidate {
        email_consent: false,
        ..lead(2)
    };
    let store = InMemoryFollowUpStore::with_candidates([lead(1), no_consent, lead(3), lead(4)]);
    let run_id = Uuid::from_u128(7);
    let at_t3 = service(&store, T3_DAY);
    let first = block_on(at_t3.run_batch(run_id, None, 3)).unwrap();
    assert_eq!(
        (first.claimed, first.t3_sent, first.t7_sent, first.skipped),
        (3, 2, 0, 1)
    );
    assert_eq!(first.processed(), 3);
    assert_eq!(first.last_lead_id, Some(Uuid::from_u128(3)));
    // The next page starts after the cursor: only lead 4 is left.
    let rest = block_on(at_t3.run_batch(run_id, first.last_lead_id, 3)).unwrap();
    assert_eq!((rest.claimed, rest.t3_sent, rest.processed()), (1, 1, 1));
    assert_eq!(rest.last_lead_id, Some(Uuid::from_u128(4)));
    let done = block_on(at_t3.run_batch(run_id, rest.last_lead_id, 3)).unwrap();
    assert_eq!(
        (done.claimed, done.processed(), done.last_lead_id),
        (0, 0, None)
    );
    assert_eq!(store.mails().len(), 3);
    // Four days later every lead is due for T+7; the one without consent is skipped again.
    let at_t7 = service(&store, T7_DAY);
    let later = block_on(at_t7.run_batch(run_id, None, 10)).unwrap();
    assert_eq!(
        (later.claimed, later.t3_sent, later.t7_sent, later.skipped),
        (4, 0, 3, 1)
    );
    assert_eq!(later.processed(), 4);
}

#[test]
fn concurrent_batches_of_a_run_process_every_lead_exactly_once() {
    let store = InMemoryFollowUpStore::with_candidates((1..=25).map(lead));
    let svc = service_with(
        &store,
        T3_DAY,
        FollowUpConfig {
            batch_size: 2,
            concurrency: 4,
            ..config()
        },
    );
    let report = run(&svc, 1);
    assert_eq!(report.t3_count, 25);
    assert!(
        store.max_locked() > 2,
        "batches were in flight at once (at most {} leads held)",
        store.max_locked()
    );
    let records = store.records();
    let leads: BTreeSet<Uuid> = records.iter().map(|r| r.lead_id).collect();
    assert_eq!((records.len(), leads.len()), (25, 25));
    assert_eq!(
        (
            store.mails().len(),
            store.activities().len(),
            store.events().len()
        ),
        (25, 25, 25)
    );
    assert_eq!(run(&svc, 2).processed(), 0);
}

#[test]
fn a_failed_batch_stops_the_concurrent_ones_after_their_commit() {
    let store = InMemoryFollowUpStore::with_candidates((1..=40).map(lead));
    let svc = service_with(
        &store,
        T3_DAY,
        FollowUpConfig {
            batch_size: 2,
            concurrency: 3,
            ..config()
        },
    );
    // Three commits succeed, the fourth fails: the batches in flight then still commit (and
    // count), no new batch starts.
    store.fail_commits_after(3, 1);
    let err = block_on(svc.run(Uuid::from_u128(9))).unwrap_err();
    let records = store.records().len();
    assert_eq!(err.report.t3_count as usize, records);
    assert!((6..40).contains(&records), "{records} recorded");
    assert_eq!(store.mails().len(), records);
    // The next run does the rest, exactly once.
    assert_eq!(run(&svc, 10).t3_count as usize, 40 - records);
    let leads: BTreeSet<Uuid> = store.records().iter().map(|r| r.lead_id).collect();
    assert_eq!(leads.len(), 40);
}

#[test]
fn locked_leads_are_skipped_not_double_processed() {
    let store = InMemoryFollowUpStore::with_candidates([lead(1), lead(2)]);
    let svc = service(&store, T3_DAY);
    block_on(async {
        let mut other = store.begin().await.unwrap();
        let held = other.claim_due(T3_DAY, None, 1).await.unwrap();
        assert_eq!(held[0].lead_id, Uuid::from_u128(1));
        let report = svc.run(Uuid::from_u128(1)).await.unwrap().0;
        assert_eq!(report.t3_count, 1);
        assert_eq!(store.records()[0].lead_id, Uuid::from_u128(2));
        drop(other);
    });
    assert_eq!(run(&svc, 2).t3_count, 1);
    assert_eq!(store.records().len(), 2);
}

#[test]
fn a_failed_batch_leaves_nothing_half_done_and_the_run_reports_what_it_committed() {
    let store = InMemoryFollowUpStore::with_candidates((1..=3).map(lead));
    let svc = service_with(
        &store,
        T3_DAY,
        FollowUpConfig {
            batch_size: 2,
            concurrency: 1,
            ..config()
        },
    );
    // Batch 1 (leads 1, 2) commits; batch 2 (lead 3) fails on commit.
    store.fail_commits_after(1, 1);
    let err = block_on(svc.run(Uuid::from_u128(9))).unwrap_err();
    assert!(matches!(
        err.source,
        BatchError::Store(StoreError::Backend(_))
    ));
    assert_eq!(
        (err.report.run_id, err.report.t3_count),
        (Uuid::from_u128(9), 2)
    );
    assert_eq!(store.records().len(), 2);
    assert_eq!(
        (
            store.mails().len(),
            store.activities().len(),
            store.events().len()
        ),
        (2, 2, 2)
    );
    assert!(store.candidate(Uuid::from_u128(3)).unwrap().t3.is_none());
    // The caller can still publish the partial run.
    let event = crate::event::processed_event(&err.report, Uuid::from_u128(6));
    assert_eq!(event.data["t3Count"], 2);
    // The next run picks lead 3 up again.
    assert_eq!(run(&svc, 10).t3_count, 1);
    assert_eq!(store.mails().len(), 3);
}

#[test]
fn service_futures_are_send() {
    // The app spawns runs on a multi-threaded runtime.
    fn assert_send<T: Send>(_: &T) {}
    let store = InMemoryFollowUpStore::new();
    let svc = service(&store, T3_DAY);
    let run = svc.run(Uuid::nil());
    assert_send(&run);
    let batch = svc.run_batch(Uuid::nil(), None, 1);
    assert_send(&batch);
}

#[test]
fn configuration_is_validated() {
    let store = InMemoryFollowUpStore::new();
    let build = |config: FollowUpConfig| {
        FollowUpService::new(
            store.clone(),
            FixedClock::new(T3_DAY),
            SequentialIds::default(),
            config,
        )
        .map(|_| ())
    };
    assert_eq!(
        build(FollowUpConfig {
            batch_size: 0,
            ..config()
        }),
        Err(ConfigError::ZeroBatchSize)
    );
    assert_eq!(
        build(FollowUpConfig {
            concurrency: 0,
            ..config()
        }),
        Err(ConfigError::ZeroConcurrency)
    );
    assert_eq!(
        build(FollowUpConfig {
            unsubscribe_base_url: " ".into(),
            ..config()
        }),
        Err(ConfigError::MissingUnsubscribeUrl)
    );
    assert_eq!(
        build(FollowUpConfig {
            unsubscribe_secret: vec![],
            ..config()
        }),
        Err(ConfigError::MissingSecret)
    );
    let [t3, _] = default_templates();
    assert_eq!(
        build(FollowUpConfig {
            templates: vec![t3.clone()],
            ..config()
        }),
        Err(ConfigError::TemplateCount {
            stage: Stage::T7,
            found: 0
        })
    );
    let mut all = default_templates().to_vec();
    all.push(t3.clone());
    assert_eq!(
        build(FollowUpConfig {
            templates: all,
            ..config()
        }),
        Err(ConfigError::TemplateCount {
            stage: Stage::T3,
            found: 2
        })
    );
    let mut bad = default_templates();
    bad[0].text.push_str("{{discount}}");
    assert!(matches!(
        build(FollowUpConfig {
            templates: bad.to_vec(),
            ..config()
        }),
        Err(ConfigError::InvalidTemplate {
            stage: Stage::T3,
            source: RenderError::NotAvailable { .. }
        })
    ));
    assert_eq!(build(config()), Ok(()));
}

#[test]
fn config_debug_redacts_the_secret() {
    let shown = format!("{:?}", config());
    assert!(shown.contains("<redacted>"));
    assert!(!shown.contains("test-secret"));
}

/// Everything observable in the store.
fn snapshot(store: &InMemoryFollowUpStore) -> impl PartialEq + std::fmt::Debug {
    (
        store.candidates(),
        store.records(),
        store.mails(),
        store.activities(),
        store.events(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn running_twice_equals_running_once(
        (now, candidates) in testing::instant().prop_flat_map(|now| {
            (Just(now), testing::candidates_registered_between(12, now - Duration::days(12), now))
        }),
        batch_size in 1usize..5,
        concurrency in 1usize..4,
    ) {
        let store = InMemoryFollowUpStore::with_candidates(candidates.clone());
        let svc = FollowUpService::new(
            store.clone(),
            FixedClock::new(now),
            SequentialIds::default(),
            FollowUpConfig { batch_size, concurrency, ..config() },
        ).unwrap();
        let first = run(&svc, 1);
        let after_first = snapshot(&store);
        let second = run(&svc, 2);
        prop_assert_eq!(second.processed(), 0);
        prop_assert_eq!(snapshot(&store), after_first);

        // Exactly once per (lead, stage), and everything written together.
        let records = store.records();
        let keys: BTreeSet<_> = records.iter().map(|r| (r.lead_id, r.record.stage)).collect();
        prop_assert_eq!(keys.len(), records.len());
        prop_assert_eq!(store.activities().len(), records.len());
        prop_assert_eq!(store.events().len(), records.len());
        prop_assert_eq!(store.mails().len(), records.iter().filter(|r| r.record.is_sent()).count());
        prop_assert_eq!(first.processed() as usize, records.len());
        prop_assert_eq!(
            (first.t3_count + first.t7_count) as usize,
            records.iter().filter(|r| r.record.is_sent()).count()
        );
        // Nothing recorded for a lead that had the stage already, and T+7 only after T+3.
        for c in &candidates {
            for r in records.iter().filter(|r| r.lead_id == c.lead_id) {
                prop_assert!(c.record(r.record.stage).is_none());
                prop_assert!(c.is_eligible());
            }
            let after = store.candidate(c.lead_id).unwrap();
            prop_assert!(after.t7.is_none() || after.t3.is_some());
        }
        for m in store.mails() {
            for part in [&m.subject, &m.html, &m.text] {
                prop_assert!(!part.contains("{{") && !part.contains("}}"));
            }
        }
        let event_keys: BTreeSet<_> = store.events().iter().map(|e| e.idempotencykey).collect();
        prop_assert_eq!(event_keys.len(), records.len());
    }
}

#[cfg(feature = "mocks")]
mod with_mocks {
    use super::*;
    use crate::port::{MockFollowUpStore, MockFollowUpTx};

    #[test]
    fn a_failed_record_is_not_committed() {
        let mut store = MockFollowUpStore::new();
        store.expect_begin().times(1).returning(|| {
            let mut tx = MockFollowUpTx::new();
            tx.expect_claim_due()
                .returning(|_, _, _| Box::pin(async { Ok(vec![lead(1)]) }));
            tx.expect_record().times(1).returning(|p| {
                let (lead_id, stage) = (p.lead_id, p.record.stage);
                Box::pin(async move { Err(StoreError::AlreadyRecorded { lead_id, stage }) })
            });
            tx.expect_commit().never();
            Box::pin(async { Ok(tx) })
        });
        let svc = FollowUpService::new(
            store,
            FixedClock::new(T3_DAY),
            SequentialIds::default(),
            config(),
        )
        .unwrap();
        let err = block_on(svc.run(Uuid::from_u128(1))).unwrap_err();
        assert!(matches!(
            err.source,
            BatchError::Store(StoreError::AlreadyRecorded {
                stage: Stage::T3,
                ..
            })
        ));
    }

    #[test]
    fn claimed_candidates_are_re_planned() {
        // The adapter's pre-selection hands out a lead that is not due yet: nothing is written.
        let mut store = MockFollowUpStore::new();
        store.expect_begin().times(1).returning(|| {
            let mut tx = MockFollowUpTx::new();
            tx.expect_claim_due().returning(|_, _, _| {
                Box::pin(async {
                    Ok(vec![Candidate {
                        registered_at: T3_DAY,
                        ..lead(1)
                    }])
                })
            });
            tx.expect_record().never();
            tx.expect_commit()
                .times(1)
                .returning(|| Box::pin(async { Ok(()) }));
            Box::pin(async { Ok(tx) })
        });
        let svc = FollowUpService::new(
            store,
            FixedClock::new(T3_DAY),
            SequentialIds::default(),
            config(),
        )
        .unwrap();
        assert_eq!(
            block_on(svc.run(Uuid::from_u128(1))).unwrap().0.processed(),
            0
        );
    }
}
