//! `FRESHPLAN_DATABASE_READ_URL` (issue 13, ADR 0015): the lead list read from a hot standby,
//! with row-level security exactly as on the primary (the standby replays the same roles and
//! policies), and read-your-writes — a caller's list shows its own write of the moment before,
//! whether the standby has replayed it (the read waits for the primary's position) or not (the
//! read goes to the primary).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::Client;
use serde_json::{Value, json};

use crate::followup_replicas::base;
use crate::helpers::*;
use crate::pg_pair::{PgPair, Replication};
use crate::process::Serve;

/// How many lead lists the standby has run (`pg_stat_statements` of the standby counts what
/// runs there; the list is the statement with `total_count`).
fn lists_on_standby(pair: &PgPair, database: &str) -> u64 {
    pair.sql_in(
        &pair.standby,
        database,
        &format!(
            "select coalesce(sum(s.calls), 0) from pg_stat_statements s \
               join pg_database d on d.oid = s.dbid \
              where d.datname = '{database}' and s.query like '%total_count%'"
        ),
    )
    .parse()
    .unwrap()
}

async fn names(client: &Client, base: &str, token: &str, query: &str) -> BTreeSet<String> {
    let r = client
        .get(format!("{base}/api/leads?size=200{query}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page: Value = r.json().await.unwrap();
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["companyName"].as_str().unwrap().to_owned())
        .collect()
}

async fn create(client: &Client, base: &str, token: &str, body: Value) {
    let r = client
        .post(format!("{base}/api/leads"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

fn ch_lead(name: &str) -> Value {
    json!({"companyName": name, "countryCode": "CH", "city": "Zürich", "postalCode": "8001"})
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lead_list_reads_from_the_standby_under_row_level_security_and_sees_ones_own_writes() {
    // Asynchronous: a commit returns before the standby has it, so read-your-writes is the
    // service's doing, not the replication's.
    let pair = PgPair::start(Replication::Asynchronous);
    let database_url =
        freshplan_store_postgres::testing::fresh_database(&pair.primary.url("postgres"))
            .await
            .expect("a database on the primary");
    let database = database_url.rsplit('/').next().unwrap().to_owned();
    pair.sql_in(
        &pair.primary,
        &database,
        "create extension if not exists pg_stat_statements",
    );
    let read_url = pair.standby.url(&database);
    let mut serve = Serve::spawn(
        &database_url,
        &[
            ("FRESHPLAN_DATABASE_READ_URL", read_url.as_str()),
            ("FRESHPLAN_POOL_SIZE", "2"),
        ],
    );
    serve.wait_ready().await;
    let base = base(&serve);
    let client = Client::new();
    let (rep_de, rep_ch) = (rep("rep-de"), token("rep-ch", &["sales"], &["CH"]));

    for n in ["Gasthof Nord", "Gasthof Süd", "Gasthof West"] {
        create(&client, &base, &rep_de, lead(n)).await;
    }
    for n in ["Beizli Zürich", "Beizli Bern"] {
        create(&client, &base, &rep_ch, ch_lead(n)).await;
    }
    pair.wait_caught_up();

    // Row-level security on the standby, as on the primary; each list ran there.
    let de = set(&["Gasthof Nord", "Gasthof Süd", "Gasthof West"]);
    let ch = set(&["Beizli Zürich", "Beizli Bern"]);
    for (who, token, expected) in [
        ("a DE rep", rep_de.clone(), de.clone()),
        ("a CH rep", rep_ch.clone(), ch.clone()),
        ("a DE manager", manager_de(), de.clone()),
        ("a CH manager", manager_ch(), ch.clone()),
        ("an admin", admin(), de.union(&ch).cloned().collect()),
    ] {
        let before = lists_on_standby(&pair, &database);
        assert_eq!(names(&client, &base, &token, "").await, expected, "{who}");
        assert_eq!(
            lists_on_standby(&pair, &database),
            before + 1,
            "{who}: the list ran on the standby"
        );
    }
    // A DE rep searching for a CH lead finds nothing there either.
    assert!(names(&client, &base, &rep_de, "&q=Beizli").await.is_empty());

    // Read-your-writes while the standby follows: each create is in the next list.
    let before = lists_on_standby(&pair, &database);
    for n in 0..20 {
        let name = format!("Eigenes Schreiben {n:02}");
        create(&client, &base, &rep_de, lead(&name)).await;
        assert_eq!(
            names(
                &client,
                &base,
                &rep_de,
                &format!("&q={}", name.replace(' ', "%20"))
            )
            .await,
            set(&[&name]),
            "the list right after the create"
        );
    }
    let served = lists_on_standby(&pair, &database) - before;
    println!("read-your-writes: {served} of 20 lists served by the standby");
    assert!(served > 0, "the standby served none of the 20 lists");

    // The standby stops replaying: its data is stale. A caller's own write is still in its list
    // (the read gave the standby 200 ms, then went to the primary), and the stale standby
    // answered nothing.
    pair.pause_replay(true);
    let before = lists_on_standby(&pair, &database);
    create(&client, &base, &rep_de, lead("Nach der Pause")).await;
    let started = Instant::now();
    assert_eq!(
        names(&client, &base, &rep_de, "&q=Nach%20der%20Pause").await,
        set(&["Nach der Pause"])
    );
    let took = started.elapsed();
    assert_eq!(lists_on_standby(&pair, &database), before);
    assert!(
        took >= freshplan_app::READ_REPLICA_MAX_WAIT && took < Duration::from_secs(3),
        "the stale standby was waited for {took:?}"
    );
    pair.pause_replay(false);
    assert!(serve.running());
}
