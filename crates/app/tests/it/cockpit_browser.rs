//! The `/cockpit` page (SPEC §8) in a real headless Chromium, driven over WebDriver: `fantoccini`
//! talks to a `chromedriver` this test starts on a free port of 127.0.0.1, which starts Chromium
//! with a profile of its own. The page takes the manager's token from the URL fragment, streams
//! `GET /api/dashboard/followup-stream`, and must show exactly the figures of
//! `GET /api/dashboard/followup` in German number formatting; a new eligible lead must raise
//! "T+3 ausstehend" by one within a second. It prints the time to the first painted figures and
//! that rise latency, and saves a screenshot to `target/cockpit-screenshot.png`.
//!
//! Chromium and chromedriver are Debian's `chromium` and `chromium-driver`; a machine without
//! them gets them installed here (`apt-get`, as root or through `sudo -n`), or the test fails
//! naming the packages.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fantoccini::ClientBuilder;
use fantoccini::wd::Capabilities;
use hyper_util::client::legacy::connect::HttpConnector;
use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use freshplan_app::config::FollowUpClock;
use freshplan_followup::{Stage, send_at};
use freshplan_kernel::{Clock, TerritoryId};

use crate::helpers::*;

/// The Debian packages this test needs.
const PACKAGES: [&str; 2] = ["chromium", "chromium-driver"];

/// The tiles, by element id, in page order.
const TILES: [&str; 4] = ["pendingT3", "pendingT7", "sentToday", "conversionRate"];

/// How long the browser side may take to come up (install excluded): Chromium's first start in
/// a fresh profile on a busy two-core machine is slow.
const STARTUP: Duration = Duration::from_secs(60);

/// The figures must reach the page within this after the commit (the objective).
const RISE_LIMIT_MS: f64 = 1000.0;

/// `name` on the `PATH` (or at `/usr/bin`).
fn which(name: &str) -> Option<PathBuf> {
    #[allow(clippy::disallowed_methods)] // tests look for the browser where the shell would
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs an `apt-get` command as root (directly, or through `sudo -n`); the failure as text.
fn apt_get(args: &[&str]) -> Result<(), String> {
    let mut cmd = if is_root() {
        Command::new("apt-get")
    } else {
        let mut sudo = Command::new("sudo");
        sudo.args(["-n", "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]);
        sudo
    };
    cmd.env("DEBIAN_FRONTEND", "noninteractive")
        .args(["-o", "DPkg::Lock::Timeout=300"])
        .args(args)
        .stdin(Stdio::null());
    match cmd.output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "apt-get {} exited with {}: {}",
            args.join(" "),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("apt-get {}: {e}", args.join(" "))),
    }
}

/// The Chromium and chromedriver binaries, installed from Debian's packages when missing.
fn browser_binaries() -> (PathBuf, PathBuf) {
    let found = || Some((which("chromium")?, which("chromedriver")?));
    if let Some(found) = found() {
        return found;
    }
    let mut install: Vec<&str> = vec!["install", "-y"];
    install.extend(PACKAGES);
    let outcome = apt_get(&["update"]).and_then(|()| apt_get(&install));
    match (found(), outcome) {
        (Some(found), _) => found,
        (None, outcome) => panic!(
            "the cockpit browser test needs headless Chromium and its WebDriver: install the \
             Debian packages `{}` (apt-get install -y {}) — installing them here failed: {}",
            PACKAGES.join("` and `"),
            PACKAGES.join(" "),
            outcome
                .err()
                .unwrap_or_else(|| "the binaries are still missing".into())
        ),
    }
}

/// A `chromedriver` on a free port of 127.0.0.1, and the profile directory of the Chromium it
/// starts. Dropping it kills what it started (by process id) and removes the profile.
struct Driver {
    child: Child,
    port: u16,
    profile: PathBuf,
    log: PathBuf,
}

impl Driver {
    fn spawn(chromedriver: &Path) -> Driver {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let id = uuid::Uuid::now_v7().simple();
        let profile = std::env::temp_dir().join(format!("freshplan-chromium-{id}"));
        std::fs::create_dir_all(&profile).unwrap();
        let log = std::env::temp_dir().join(format!("freshplan-chromedriver-{id}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", chromedriver.display()));
        Driver {
            child,
            port,
            profile,
            log,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until chromedriver answers `GET /status` with `ready: true`.
    async fn wait_ready(&mut self) {
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(r) = client.get(format!("{}/status", self.url())).send().await
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                return;
            }
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "chromedriver exited:\n{}",
                self.log()
            );
            assert!(
                started.elapsed() < STARTUP,
                "chromedriver not ready after {STARTUP:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The processes started with this driver's profile directory (Chromium and its helpers):
    /// normally none is left once the session is closed.
    fn browser_processes(&self) -> Vec<String> {
        let marker = format!("--user-data-dir={}", self.profile.display());
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.filter_map(|e| {
            let pid = e.ok()?.file_name().into_string().ok()?;
            pid.parse::<u32>().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            cmdline
                .split(|b| *b == 0)
                .any(|arg| arg == marker.as_bytes())
                .then_some(pid)
        })
        .collect()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // A test that failed before closing its session leaves Chromium running: end exactly the
        // processes that carry this test's profile, then chromedriver.
        for pid in self.browser_processes() {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.profile);
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// The capabilities of the session: headless Chromium, a profile of its own.
fn capabilities(chromium: &Path, profile: &Path) -> Capabilities {
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-dev-shm-usage",
                format!("--user-data-dir={}", profile.display()),
                "--window-size=1280,800",
                "--lang=de-DE",
            ],
        },
        "timeouts": {"script": 10_000, "pageLoad": 60_000, "implicit": 0},
    });
    match caps {
        Value::Object(map) => map,
        _ => unreachable!(),
    }
}

/// `n` as `Intl.NumberFormat("de-DE")` writes an integer: `.` between groups of three.
fn german_integer(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('.');
        }
        out.push(c);
    }
    out
}

/// A percentage as the page writes it: one decimal, a decimal comma, then ` %`.
fn german_percent(p: f64) -> String {
    let text = format!("{p:.1}");
    let (int, frac) = text.split_once('.').unwrap();
    format!("{},{frac} %", german_integer(int.parse().unwrap()))
}

/// The four tile texts that the figures of `GET /api/dashboard/followup` must produce.
fn expected_tiles(f: &Value) -> Vec<String> {
    vec![
        german_integer(f["pendingT3"].as_u64().unwrap()),
        german_integer(f["pendingT7"].as_u64().unwrap()),
        german_integer(f["sentToday"].as_u64().unwrap()),
        german_percent(f["conversionRate"].as_f64().unwrap()),
    ]
}

/// What the page shows: the tiles' texts, the scope, the status line and the paint count.
#[derive(Debug)]
struct Shown {
    tiles: Vec<String>,
    scope: String,
    status: String,
    updates: u64,
}

async fn shown(browser: &fantoccini::Client) -> Shown {
    let v = browser
        .execute(
            "const text = (id) => document.getElementById(id).textContent;
             return {
               tiles: arguments[0].map(text),
               scope: text('scope'),
               status: text('status'),
               updates: Number(document.body.dataset.updates || 0),
             };",
            vec![json!(TILES)],
        )
        .await
        .expect("reading the tiles");
    Shown {
        tiles: v["tiles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect(),
        scope: v["scope"].as_str().unwrap().to_owned(),
        status: v["status"].as_str().unwrap().to_owned(),
        updates: v["updates"].as_u64().unwrap(),
    }
}

fn epoch_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

/// A German lead with a consenting contact; registered at `registered` (admins may backdate).
fn german_lead(name: &str, email: &str, registered: Option<OffsetDateTime>) -> Value {
    let mut body = json!({
        "companyName": name, "countryCode": "DE", "city": "Hamburg", "postalCode": "20095",
        "contactPerson": "Jonas Petersen", "businessType": "HOTEL", "emailConsent": true,
        "email": email,
    });
    if let Some(at) = registered {
        body["registeredAt"] = json!(at.format(&Rfc3339).unwrap());
    }
    body
}

/// A clock at real speed, `behind` the wall clock.
struct Behind(time::Duration);

impl Clock for Behind {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() - self.0
    }
}

/// Follow-ups go out only inside business hours (SPEC §6): the app's follow-up side runs on a
/// clock set to 10:00 UTC of the latest German business day (at real speed), so this test sends
/// at any hour.
fn business_clock() -> Arc<dyn Clock> {
    let now = OffsetDateTime::now_utc();
    let ten = (0..30)
        .map(|days| (now - time::Duration::days(days)).replace_time(time::macros::time!(10:00)))
        .find(|t| *t <= now && freshplan_territory::next_business_slot(TerritoryId::De, *t) == *t)
        .expect("a German business day within 30 days");
    Arc::new(Behind(now - ten))
}

/// T+3 due and sendable at `now` (the follow-up clock's), T+7 not yet due.
fn t3_due(now: OffsetDateTime) -> OffsetDateTime {
    let registered = now - time::Duration::days(7) + time::Duration::minutes(30);
    assert!(send_at(TerritoryId::De, registered, Stage::T3) <= now);
    registered
}

async fn set_status(app: &TestApp, lead: &str, status: &str) {
    let r = app.get(&admin(), &format!("/api/leads/{lead}")).await;
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let r = app
        .req(Method::PATCH, &format!("/api/leads/{lead}"), &admin())
        .header("if-match", etag)
        .header("content-type", "application/merge-patch+json")
        .body(json!({"status": status}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

async fn figures(app: &TestApp, tok: &str) -> Value {
    let r = app.get(tok, "/api/dashboard/followup").await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Waits until the manager's figures are `(pendingT3, pendingT7, sentToday, conversionRate)`:
/// the cache follows commits through the event pipeline, milliseconds later.
async fn figures_become(app: &TestApp, tok: &str, expected: (u64, u64, u64, f64)) -> Value {
    let started = Instant::now();
    loop {
        let f = figures(app, tok).await;
        let got = (
            f["pendingT3"].as_u64().unwrap(),
            f["pendingT7"].as_u64().unwrap(),
            f["sentToday"].as_u64().unwrap(),
            f["conversionRate"].as_f64().unwrap(),
        );
        if got == expected {
            return f;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "figures {f} instead of {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Where the screenshot goes: `<target dir>/cockpit-screenshot.png`.
fn screenshot_path() -> PathBuf {
    // CARGO_TARGET_TMPDIR is `<target dir>/tmp`, wherever CARGO_TARGET_DIR puts it.
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("cockpit-screenshot.png")
}

#[actix_web::test]
async fn the_cockpit_in_headless_chromium_shows_the_api_figures_and_a_new_lead_within_a_second() {
    let (chromium, chromedriver) = browser_binaries();

    // The data: three due leads whose T+3 goes out (one of them converts), two fresh German
    // leads, and a Swiss one outside the German manager's scope.
    let clock = business_clock();
    let followup_clock = clock.clone();
    let app = spawn_app_with(|c| c.followup_clock = FollowUpClock::new(followup_clock))
        .await
        .expect("start");
    let adm = admin();
    let due = t3_due(clock.now());
    let mut sent = Vec::new();
    for (i, name) in ["Hotel Elbblick", "Gasthof Alster", "Kantine Hafen"]
        .iter()
        .enumerate()
    {
        let lead = app
            .create_ok(
                &adm,
                german_lead(name, &format!("kontakt{i}@cockpit.test"), Some(due)),
            )
            .await;
        sent.push(lead["id"].as_str().unwrap().to_owned());
    }
    app.create_ok(&adm, german_lead("Bistro Neu", "bistro@cockpit.test", None))
        .await;
    app.create_ok(&adm, german_lead("Café Neu", "cafe@cockpit.test", None))
        .await;
    app.create_ok(
        &adm,
        json!({"companyName": "Restaurant Zürichsee", "countryCode": "CH", "city": "Zürich", "postalCode": "8001"}),
    )
    .await;
    let r = app
        .req(Method::POST, "/api/followups/run", &adm)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let report: Value = r.json().await.unwrap();
    assert_eq!(report["t3Count"], 3, "{report}");
    set_status(&app, &sent[0], "QUALIFIED").await;
    set_status(&app, &sent[0], "CONVERTED").await;
    let manager = manager_de();
    let api = figures_become(&app, &manager, (2, 2, 3, 33.3)).await;
    assert_eq!(
        expected_tiles(&api),
        ["2", "2", "3", "33,3 %"],
        "German formatting: a decimal comma and a space before the percent sign"
    );

    // The browser.
    let mut driver = Driver::spawn(&chromedriver);
    driver.wait_ready().await;
    let browser = tokio::time::timeout(
        STARTUP,
        ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities(&chromium, &driver.profile))
            .connect(&driver.url()),
    )
    .await
    .unwrap_or_else(|_| panic!("no WebDriver session after {STARTUP:?}:\n{}", driver.log()))
    .unwrap_or_else(|e| panic!("WebDriver session: {e}\n{}", driver.log()));

    // Open the cockpit with the manager's token in the fragment; wait for the first figures.
    let opened = Instant::now();
    browser
        .goto(&format!("{}/cockpit#token={manager}", app.base))
        .await
        .expect("open /cockpit");
    let first = loop {
        let s = shown(&browser).await;
        if s.tiles.iter().all(|t| t != "–") {
            break s;
        }
        assert!(
            opened.elapsed() < STARTUP,
            "no figures on the page after {STARTUP:?}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let seen_after = opened.elapsed();
    let first_paint_ms = browser
        .execute(
            "const m = performance.getEntriesByName('figures-painted')[0];
             return m ? m.startTime : null;",
            vec![],
        )
        .await
        .unwrap()
        .as_f64()
        .expect("the page marks its first painted figures (performance.mark)");
    println!(
        "cockpit: navigation start -> first painted figures {first_paint_ms:.1} ms (page's \
         performance mark); seen by the test {seen_after:?} after goto began"
    );
    assert!(
        first_paint_ms < 10_000.0,
        "first figures after {first_paint_ms} ms"
    );

    // Exactly the API's figures, in German formatting, for the manager's scope; live.
    assert_eq!(first.tiles, expected_tiles(&api), "{first:?} vs {api}");
    assert_eq!(first.tiles, ["2", "2", "3", "33,3 %"]);
    assert_eq!(first.scope, "TERRITORIES");
    assert_eq!(first.status, "live");
    assert_eq!(
        figures(&app, &manager).await["pendingT3"],
        api["pendingT3"],
        "nothing moved meanwhile"
    );
    // The token left the address bar and stays in this tab only.
    let url = browser.current_url().await.unwrap();
    assert_eq!(url.fragment(), None, "{url}");
    let kept = browser
        .execute("return sessionStorage.getItem('freshplan.token');", vec![])
        .await
        .unwrap();
    assert_eq!(kept, json!(manager));

    // A new eligible lead (REGISTERED, clock running, German): "T+3 ausstehend" rises by one.
    // The page records when the tile changed (wall clock); the test when it sent the create.
    browser
        .execute(
            "window.__t3 = [];
             const el = document.getElementById('pendingT3');
             new MutationObserver(() => window.__t3.push({
               text: el.textContent, at: performance.timeOrigin + performance.now() }))
               .observe(el, { childList: true, characterData: true, subtree: true });
             return true;",
            vec![],
        )
        .await
        .unwrap();
    let expected = german_integer(api["pendingT3"].as_u64().unwrap() + 1);
    let sent_at = epoch_ms();
    let sent_instant = Instant::now();
    let created = app
        .create_ok(
            &adm,
            german_lead("Hotel Neueröffnung", "neu@cockpit.test", None),
        )
        .await;
    let created_after = sent_instant.elapsed();
    assert_eq!(created["status"], "REGISTERED");
    assert!(created["protection"]["clockStoppedAt"].is_null());
    let changes = loop {
        let changes = browser
            .execute("return window.__t3;", vec![])
            .await
            .unwrap();
        if changes
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["text"] == expected.as_str())
        {
            break changes;
        }
        assert!(
            sent_instant.elapsed() < Duration::from_secs(10),
            "T+3 pending never became {expected}: {changes}, {:?}",
            shown(&browser).await
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let observed_after = sent_instant.elapsed();
    let changes = changes.as_array().unwrap();
    let painted_at = changes
        .iter()
        .find(|c| c["text"] == expected.as_str())
        .and_then(|c| c["at"].as_f64())
        .unwrap();
    let rise_ms = painted_at - sent_at;
    println!(
        "cockpit: create sent -> T+3 tile {expected} painted {rise_ms:.1} ms (the create's 201 \
         after {created_after:?}; the test saw the tile after {observed_after:?})"
    );
    assert!(
        rise_ms < RISE_LIMIT_MS,
        "T+3 pending rose {rise_ms:.1} ms after the create was sent (limit {RISE_LIMIT_MS} ms)"
    );
    assert!(
        rise_ms > -50.0,
        "the page's clock disagrees with the test's: {rise_ms} ms"
    );
    // It went straight to the new figure: no other value in between.
    assert!(
        changes.iter().all(|c| c["text"] == expected.as_str()),
        "{changes:?}"
    );
    let after = shown(&browser).await;
    assert!(after.updates > first.updates, "{after:?}");
    let api_after = figures(&app, &manager).await;
    assert_eq!(after.tiles, expected_tiles(&api_after), "{api_after}");
    assert_eq!(after.tiles, [expected.as_str(), "2", "3", "33,3 %"]);

    // What a person sees.
    let png = browser.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let path = screenshot_path();
    std::fs::write(&path, &png).unwrap();
    println!("cockpit: screenshot {}", path.display());

    browser.close().await.expect("closing the session");
    // Closing the session ends Chromium; chromedriver is stopped when `driver` drops.
    let started = Instant::now();
    while !driver.browser_processes().is_empty() && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
