//! `GET /api/leads` on PostgreSQL behaves like the in-memory reference adapter: filters, sorts
//! with the id tie-break, paging, `q` with literal `%`/`_`, totals — for several actors.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use time::Duration;

use freshplan_kernel::{Actor, TerritoryId};
use freshplan_leads::Lead;
use freshplan_leads::memory::InMemoryLeadStore;
use freshplan_leads::model::{BusinessType, Email, Volume};
use freshplan_leads::ports::{LeadQuery, LeadStore, LeadTx, SortField};
use freshplan_leads::status::LeadStatus;
use freshplan_store_postgres::PgLeadStore;

use crate::helpers::{Db, NOW, admin, lead, manager, rep, uid, viewer, with_collaborators};

const SORTS: [SortField; 8] = [
    SortField::CreatedAt,
    SortField::UpdatedAt,
    SortField::CompanyName,
    SortField::Status,
    SortField::RegisteredAt,
    SortField::LastActivityAt,
    SortField::EstimatedVolume,
    SortField::City,
];

/// 36 leads with ties in every sort key, missing values, both territories, several owners,
/// deleted ones, and names with LIKE metacharacters.
fn dataset() -> Vec<Lead> {
    let names = [
        "Gasthaus",
        "hotel",
        "Kantine",
        "Äckerle",
        "Zum Löwen",
        "catering",
    ];
    let cities = [
        Some("Berlin"),
        Some("Zürich"),
        None,
        Some("bremen"),
        Some("Ulm"),
        Some("Äpfelstadt"),
    ];
    let statuses = [
        LeadStatus::Registered,
        LeadStatus::Active,
        LeadStatus::Qualified,
        LeadStatus::Deleted,
        LeadStatus::Registered,
        LeadStatus::Reminder,
        LeadStatus::Lost,
    ];
    let types = [
        Some(BusinessType::Restaurant),
        Some(BusinessType::Hotel),
        None,
        Some(BusinessType::Canteen),
    ];
    (1..=36i64)
        .map(|n| {
            let company = match n {
                1 => "100% Bio GmbH".to_owned(),
                2 => "Bio_Markt".to_owned(),
                3 => "BioXMarkt".to_owned(),
                4 => r"Back\Slash Küche".to_owned(),
                5 => "Bio Markt 100".to_owned(),
                _ => format!("{} {n}", names[(n % 6) as usize]),
            };
            let country = if n % 3 == 0 { "CH" } else { "DE" };
            let owner = ["rep-1", "rep-2", "rep-3"][(n % 3) as usize];
            let mut l = lead(n as u128, &company, country, owner);
            if n % 4 == 1 {
                l = with_collaborators(l, &["rep-1"]);
            }
            l.data.city = cities[(n % 6) as usize].map(str::to_owned);
            l.data.business_type = types[(n % 4) as usize];
            l.data.estimated_volume =
                (n % 4 != 0).then(|| Volume::from_cents((n % 5) * 1000).unwrap());
            l.data.contact_person = (n % 2 == 0).then(|| format!("Anna_{n} Maier"));
            l.data.email =
                (n % 3 == 1).then(|| Email::parse(&format!("kontakt{n}@beispiel.de")).unwrap());
            l.status = statuses[(n % 7) as usize];
            if l.status == LeadStatus::Deleted {
                l.version = 2;
            }
            l.created_at = NOW - Duration::hours(n % 7);
            l.updated_at = NOW - Duration::minutes(n % 5);
            l.registered_at = NOW - Duration::days(n % 4);
            l.last_activity_at = (n % 3 != 0).then(|| NOW - Duration::hours(n % 4));
            l
        })
        .collect()
}

async fn compare(mem: &InMemoryLeadStore, pg: &PgLeadStore, actor: &Actor, q: &LeadQuery) {
    let mut mt = mem.begin(actor).await.unwrap();
    let expected = mt.list(q).await.unwrap();
    let mut pt = pg.begin(actor).await.unwrap();
    let got = pt.list(q).await.unwrap();
    let names = |p: &[Lead]| {
        p.iter()
            .map(|l| l.data.company_name.as_str().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&got.items),
        names(&expected.items),
        "{}: {q:?}",
        actor.user_id()
    );
    assert_eq!(got.items, expected.items, "{}: {q:?}", actor.user_id());
    assert_eq!(got.total, expected.total, "{}: {q:?}", actor.user_id());
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn the_list_matches_the_reference_adapter(pool_opts: PgPoolOptions, opts: PgConnectOptions) {
    let db = Db::new(pool_opts, opts).await;
    let leads = dataset();
    db.seed(&leads).await;
    let mem = InMemoryLeadStore::default();
    for l in &leads {
        mem.seed(l.clone());
    }
    let pg = db.store();
    let actors = [
        admin(),
        manager(TerritoryId::De),
        viewer(TerritoryId::Ch),
        rep("rep-1"),
    ];
    for actor in &actors {
        for sort in SORTS {
            for descending in [false, true] {
                for page in 0..3 {
                    let q = LeadQuery {
                        sort,
                        descending,
                        page,
                        size: 7,
                        ..LeadQuery::default()
                    };
                    compare(&mem, &pg, actor, &q).await;
                }
            }
        }
        let filters = [
            LeadQuery {
                statuses: vec![LeadStatus::Registered, LeadStatus::Reminder],
                ..LeadQuery::default()
            },
            LeadQuery {
                statuses: vec![LeadStatus::Deleted],
                ..LeadQuery::default()
            },
            LeadQuery {
                territory: Some(TerritoryId::Ch),
                ..LeadQuery::default()
            },
            LeadQuery {
                owner: Some(uid("rep-2")),
                sort: SortField::CompanyName,
                ..LeadQuery::default()
            },
            LeadQuery {
                business_type: Some(BusinessType::Hotel),
                sort: SortField::City,
                descending: false,
                ..LeadQuery::default()
            },
            LeadQuery {
                territory: Some(TerritoryId::De),
                statuses: vec![LeadStatus::Active, LeadStatus::Registered],
                owner: Some(uid("rep-1")),
                business_type: Some(BusinessType::Restaurant),
                ..LeadQuery::default()
            },
            LeadQuery {
                page: 5,
                size: 10,
                ..LeadQuery::default()
            },
            LeadQuery {
                size: 200,
                ..LeadQuery::default()
            },
        ];
        for q in &filters {
            compare(&mem, &pg, actor, q).await;
        }
        for needle in [
            "bio",
            "BIO",
            "%",
            "_",
            "0%",
            "o_m",
            "\\",
            "%bio%",
            "zürich",
            "ÄCKERLE",
            "anna_",
            "beispiel.de",
            "kontakt1",
            "",
            "nichts",
            "a\u{1f}b",
        ] {
            let q = LeadQuery {
                q: Some(needle.to_owned()),
                sort: SortField::CompanyName,
                descending: false,
                size: 50,
                ..LeadQuery::default()
            };
            compare(&mem, &pg, actor, &q).await;
        }
    }
    // Deleted leads, for admins.
    let q = LeadQuery {
        include_deleted: true,
        size: 200,
        ..LeadQuery::default()
    };
    compare(&mem, &pg, &admin(), &q).await;
    db.close().await;
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn like_metacharacters_are_literal(pool_opts: PgPoolOptions, opts: PgConnectOptions) {
    let db = Db::new(pool_opts, opts).await;
    db.seed(&dataset()).await;
    let store = db.store();
    let mut tx = store.begin(&admin()).await.unwrap();
    let mut search = async |needle: &str| {
        let q = LeadQuery {
            q: Some(needle.to_owned()),
            sort: SortField::CompanyName,
            descending: false,
            ..LeadQuery::default()
        };
        let page = tx.list(&q).await.unwrap();
        (
            page.items
                .iter()
                .map(|l| l.data.company_name.as_str().to_owned())
                .collect::<Vec<_>>(),
            page.total,
        )
    };
    // `%` and `_` match themselves only; as wildcards they would match far more.
    assert_eq!(search("0%").await, (vec!["100% Bio GmbH".to_owned()], 1));
    assert_eq!(search("o_m").await, (vec!["Bio_Markt".to_owned()], 1));
    let underscores = dataset()
        .iter()
        .filter(|l| !l.is_deleted())
        .filter(|l| {
            l.data.company_name.as_str().contains('_')
                || l.data
                    .contact_person
                    .as_deref()
                    .is_some_and(|c| c.contains('_'))
        })
        .count();
    assert!(underscores > 1);
    assert_eq!(
        search("_").await.1,
        underscores as u64,
        "Bio_Markt and the Anna_… contacts"
    );
    assert_eq!(
        search(r"k\s").await,
        (vec![r"Back\Slash Küche".to_owned()], 1)
    );
    assert_eq!(
        search("bio markt").await,
        (vec!["Bio Markt 100".to_owned()], 1)
    );
    // A match never spans two fields (company "… 12" + contact "Anna_12 …").
    assert_eq!(search("12anna").await.1, 0);
    drop(tx);
    db.close().await;
}

/// A first page without an owner or search filter is planned once per connection and its plan
/// reused (ADR 0016): PostgreSQL's own count of custom plans for it stays 0, for a manager's,
/// a sales rep's and an admin's list. With the filter values bound, every call was planned
/// anew (five custom plans at least, then one per call). The same statuses in another order, or
/// repeated, are the same statement.
#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn first_pages_are_planned_once_per_connection(
    pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    let db = Db::new(pool_opts, opts.clone()).await;
    db.seed(&dataset()).await;
    let one = freshplan_store_postgres::app_pool_options(PgPoolOptions::new().max_connections(1))
        .connect_with(opts)
        .await
        .unwrap();
    let store = PgLeadStore::new(one.clone());
    let open_de = |statuses: Vec<LeadStatus>| LeadQuery {
        statuses,
        territory: Some(TerritoryId::De),
        sort: SortField::UpdatedAt,
        ..LeadQuery::default()
    };
    let lists = [
        (
            manager(TerritoryId::De),
            open_de(vec![LeadStatus::Registered, LeadStatus::Active]),
        ),
        (
            manager(TerritoryId::De),
            open_de(vec![LeadStatus::Active, LeadStatus::Registered]),
        ),
        (
            manager(TerritoryId::De),
            open_de(vec![
                LeadStatus::Active,
                LeadStatus::Registered,
                LeadStatus::Active,
            ]),
        ),
        (
            rep("rep-1"),
            LeadQuery {
                statuses: vec![LeadStatus::Active],
                sort: SortField::CompanyName,
                descending: false,
                ..LeadQuery::default()
            },
        ),
        (
            admin(),
            LeadQuery {
                business_type: Some(BusinessType::Hotel),
                sort: SortField::EstimatedVolume,
                ..LeadQuery::default()
            },
        ),
    ];
    for _ in 0..8 {
        for (actor, q) in &lists {
            let mut tx = store.begin(actor).await.unwrap();
            let page = tx.list(q).await.unwrap();
            assert!(page.total > 0, "{q:?} finds leads");
            tx.commit().await.unwrap();
        }
    }
    let mut plans: Vec<(i64, i64)> = sqlx::query_as(
        "select generic_plans, custom_plans from pg_prepared_statements \
          where statement like '%total_count%' \
            and statement not like '%pg_prepared_statements%'",
    )
    .fetch_all(&one)
    .await
    .unwrap();
    plans.sort_unstable();
    assert_eq!(
        plans,
        vec![(8, 0), (8, 0), (24, 0)],
        "three statements (the manager's three status orders are one), each planned once and \
         its plan reused"
    );
    one.close().await;
    db.close().await;
}
