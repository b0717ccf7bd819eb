//! Demo data for `cargo xtask demo` (decision record: `docs/decisions/0004-demo-data.md`).
//!
//! The data is not invented row by row: every lead *lives through* its history in the domain.
//! [`generate`] registers each lead at a past instant with `Lead::register`, then replays its
//! history in time order — contacts logged by its owner or collaborators
//! (`Lead::record_activity`), status changes, clock stops, reassignments and re-openings
//! (`Lead::apply_patch` & co., each checked against `access::decide` first), the protection sweep
//! at the exact instants `protection::next_due` names (`Lead::sweep`), and the T+3/T+7 follow-ups
//! whenever `freshplan_followup::plan` says a stage is processed — until `now`. Every status,
//! protection window, follow-up record and timeline entry is therefore what the domain itself
//! computed, and at `now` nothing is overdue: a sweep or a follow-up run right after seeding has
//! nothing to catch up on.
//!
//! A fixed-seed xorshift generator makes the data reproducible: the same `now` and seed give the
//! same leads, ids included. [`load`] writes the result in one transaction as the `system`
//! context (row-level security applies): leads through the production adapter's own insert
//! (`PgLeadTx::insert`, so the derived columns — duplicate keys, `next_sweep_at` — come from the
//! same code as in production), activities and follow-up records in bulk (`unnest`).
//!
//! The seeded history writes no outbox events: it is an import of what happened before the demo
//! started, and the event feed shows what happens while the demo runs.

use std::collections::{BTreeMap, HashSet};

use anyhow::{Context, Result, ensure};
use sqlx::PgPool;
use time::{Duration, OffsetDateTime, Time};
use uuid::Uuid;

use freshplan_followup::plan::{Candidate, Plan, apply_outcome, plan};
use freshplan_followup::stage::{FollowUpRecord, Stage};
use freshplan_kernel::{Actor, Role, TerritoryId, UserId};
use freshplan_leads::Lead;
use freshplan_leads::access::{self, Action, Decision, LeadFacts};
use freshplan_leads::activity::{Activity, ActivityType};
use freshplan_leads::lead::{Changes, FollowUpMark, LeadData, LeadPatch};
use freshplan_leads::model::{BusinessType, CompanyName, Email, KitchenSize, LeadSource, Volume};
use freshplan_leads::ports::{LeadStore as _, LeadTx as _};
use freshplan_leads::protection::{ProtectionPolicy, SweepFacts, next_due};
use freshplan_leads::status::LeadStatus;
use freshplan_store_postgres::PgLeadStore;

/// How many leads the demo seeds.
pub(crate) const DEMO_LEADS: usize = 2_400;
/// The seed of the demo's random generator.
pub(crate) const DEMO_SEED: u64 = 0x00f7_e5a1_2026;
/// How far back registrations reach.
const HISTORY_DAYS: i64 = 240;

/// The German sales reps (their ids are the `sub` of their tokens).
pub(crate) const REPS_DE: [&str; 4] = [
    "anna.schmidt",
    "lukas.weber",
    "sophie.becker",
    "jonas.hoffmann",
];
/// The Swiss sales reps.
pub(crate) const REPS_CH: [&str; 2] = ["laura.meier", "nico.keller"];
/// The German sales manager.
pub(crate) const MANAGER_DE: &str = "petra.wagner";
/// The Swiss sales manager.
pub(crate) const MANAGER_CH: &str = "urs.brunner";
/// The administrator (imports leads, may do anything).
pub(crate) const ADMIN: &str = "admin";

/// A demo user the demo prints a token for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Persona {
    /// What the persona is, e.g. `manager CH`.
    pub(crate) label: &'static str,
    /// The shell variable the printed `export` line sets.
    pub(crate) var: &'static str,
    /// The user id (`sub`).
    pub(crate) sub: &'static str,
    /// Comma-separated roles.
    pub(crate) roles: &'static str,
    /// Comma-separated territories.
    pub(crate) territories: &'static str,
}

/// The personas with printed tokens: an admin, a manager per territory, a rep per territory.
pub(crate) const PERSONAS: [Persona; 5] = [
    Persona {
        label: "admin",
        var: "ADMIN_TOKEN",
        sub: ADMIN,
        roles: "admin",
        territories: "",
    },
    Persona {
        label: "manager DE",
        var: "MANAGER_DE_TOKEN",
        sub: MANAGER_DE,
        roles: "manager",
        territories: "DE",
    },
    Persona {
        label: "manager CH",
        var: "MANAGER_CH_TOKEN",
        sub: MANAGER_CH,
        roles: "manager",
        territories: "CH",
    },
    Persona {
        label: "sales rep DE",
        var: "REP_DE_TOKEN",
        sub: REPS_DE[0],
        roles: "sales",
        territories: "DE",
    },
    Persona {
        label: "sales rep CH",
        var: "REP_CH_TOKEN",
        sub: REPS_CH[0],
        roles: "sales",
        territories: "CH",
    },
];

// ---------------------------------------------------------------------------------------------
// Reference data
// ---------------------------------------------------------------------------------------------

/// A town with its postal codes and telephone area code.
struct Town {
    name: &'static str,
    postal_codes: &'static [&'static str],
    area_code: &'static str,
}

const fn town(
    name: &'static str,
    postal_codes: &'static [&'static str],
    area_code: &'static str,
) -> Town {
    Town {
        name,
        postal_codes,
        area_code,
    }
}

const TOWNS_DE: &[Town] = &[
    town(
        "Berlin",
        &[
            "10115", "10117", "10178", "10245", "10435", "10623", "12043",
        ],
        "30",
    ),
    town(
        "Hamburg",
        &["20095", "20354", "20457", "22765", "22767"],
        "40",
    ),
    town(
        "München",
        &["80331", "80469", "80802", "81667", "81369"],
        "89",
    ),
    town("Köln", &["50667", "50672", "50823", "51103"], "221"),
    town(
        "Frankfurt am Main",
        &["60311", "60313", "60594", "60487"],
        "69",
    ),
    town("Stuttgart", &["70173", "70178", "70190"], "711"),
    town("Düsseldorf", &["40210", "40213", "40477"], "211"),
    town("Leipzig", &["04103", "04109", "04275"], "341"),
    town("Dresden", &["01067", "01069", "01099"], "351"),
    town("Nürnberg", &["90402", "90403", "90429"], "911"),
    town("Hannover", &["30159", "30161", "30173"], "511"),
    town("Bremen", &["28195", "28203"], "421"),
    town("Freiburg im Breisgau", &["79098", "79102"], "761"),
    town("Heidelberg", &["69115", "69117"], "6221"),
    town("Münster", &["48143", "48153"], "251"),
    town("Regensburg", &["93047", "93049"], "941"),
    town("Potsdam", &["14467", "14469"], "331"),
    town("Rostock", &["18055", "18057"], "381"),
    town("Augsburg", &["86150", "86152"], "821"),
    town("Mainz", &["55116", "55118"], "6131"),
    town("Lübeck", &["23552", "23554"], "451"),
    town("Konstanz", &["78462", "78464"], "7531"),
    town("Bamberg", &["96047", "96049"], "951"),
    town("Garmisch-Partenkirchen", &["82467"], "8821"),
    town("Erfurt", &["99084", "99089"], "361"),
    town("Würzburg", &["97070", "97072"], "931"),
    town("Kiel", &["24103", "24105"], "431"),
    town("Aachen", &["52062", "52064"], "241"),
];

const TOWNS_CH: &[Town] = &[
    town(
        "Zürich",
        &["8001", "8002", "8004", "8005", "8008", "8050"],
        "44",
    ),
    town("Bern", &["3011", "3013", "3007"], "31"),
    town("Basel", &["4051", "4052", "4056"], "61"),
    town("Luzern", &["6003", "6004", "6005"], "41"),
    town("St. Gallen", &["9000", "9008"], "71"),
    town("Winterthur", &["8400", "8404"], "52"),
    town("Zug", &["6300"], "41"),
    town("Chur", &["7000"], "81"),
    town("Interlaken", &["3800"], "33"),
    town("Davos", &["7270"], "81"),
    town("Schaffhausen", &["8200"], "52"),
    town("Aarau", &["5000"], "62"),
    town("Thun", &["3600"], "33"),
    town("Baden", &["5400"], "56"),
    town("Olten", &["4600"], "62"),
    town("Zermatt", &["3920"], "27"),
    town("Solothurn", &["4500"], "32"),
    town("Frauenfeld", &["8500"], "52"),
    town("Arosa", &["7050"], "81"),
];

/// Liechtenstein: country `LI`, territory CH (SPEC §1).
const TOWNS_LI: &[Town] = &[
    town("Vaduz", &["9490"], ""),
    town("Schaan", &["9494"], ""),
    town("Triesen", &["9495"], ""),
];

const STREETS_DE: &[&str] = &[
    "Hauptstraße",
    "Bahnhofstraße",
    "Marktplatz",
    "Kirchgasse",
    "Lindenallee",
    "Schillerstraße",
    "Gartenstraße",
    "Am Hafen",
    "Goethestraße",
    "Mühlenweg",
    "Ringstraße",
    "Industriestraße",
];
const STREETS_CH: &[&str] = &[
    "Bahnhofstrasse",
    "Hauptstrasse",
    "Seestrasse",
    "Dorfstrasse",
    "Kirchgasse",
    "Poststrasse",
    "Marktgasse",
    "Industriestrasse",
    "Rosenweg",
    "Landstrasse",
];

const FIRST_NAMES: &[&str] = &[
    "Anna",
    "Thomas",
    "Sabine",
    "Michael",
    "Julia",
    "Stefan",
    "Katrin",
    "Andreas",
    "Claudia",
    "Markus",
    "Petra",
    "Daniel",
    "Sandra",
    "Tobias",
    "Nicole",
    "Florian",
    "Monika",
    "Christian",
    "Eva",
    "Matthias",
    "Lea",
    "Reto",
    "Corinne",
    "Beat",
    "Nadine",
    "Urs",
    "Simone",
    "Marco",
    "Franziska",
    "Jürgen",
];
const LAST_NAMES: &[&str] = &[
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
    "Schulz",
    "Hoffmann",
    "Koch",
    "Richter",
    "Klein",
    "Wolf",
    "Schröder",
    "Neumann",
    "Braun",
    "Zimmermann",
    "Krüger",
    "Hartmann",
    "Meier",
    "Keller",
    "Huber",
    "Brunner",
    "Baumann",
    "Frei",
    "Gerber",
    "Steiner",
    "Moser",
    "Widmer",
];

const INN_NAMES: &[&str] = &[
    "Zur Post",
    "Zum Löwen",
    "Adler",
    "Krone",
    "Sonne",
    "Hirschen",
    "Linde",
    "Zum Schwanen",
    "Bären",
    "Ochsen",
    "Stern",
    "Engel",
    "Rebstock",
    "Zum Anker",
    "Alte Mühle",
    "Am Markt",
    "Am See",
    "Stadtgarten",
    "Ratskeller",
    "Lamm",
    "Kreuz",
    "Schützenhaus",
    "Waldhaus",
    "Seeblick",
    "Bellevue",
    "Alpenblick",
    "Bergfrieden",
    "Goldener Hahn",
    "Drei Könige",
    "Blaue Traube",
    "Weisses Kreuz",
    "Sternen",
    "Hecht",
    "Falken",
    "Rose",
    "Tanne",
    "Schiff",
    "Rössli",
    "Eintracht",
    "Edelweiss",
];
const INSTITUTIONS: &[&str] = &[
    "Stadtwerke",
    "Klinikum Nord",
    "Universität",
    "Rathaus",
    "Technologiepark",
    "Logistikzentrum",
    "Landratsamt",
    "Sparkasse",
    "Versicherungshaus",
    "Messe",
    "Hafen",
    "Flughafen",
    "Fachhochschule",
    "Kreisspital",
    "Gymnasium am Park",
    "Maschinenwerk",
    "Chemiepark",
    "Verwaltungszentrum",
    "Campus Süd",
    "Seniorenresidenz",
];
const SHOP_NAMES: &[&str] = &[
    "am Dom",
    "Sonnenschein",
    "Kornblume",
    "Zuckerbäcker",
    "Gute Stube",
    "am Marktplatz",
    "Altstadt",
    "am Bahnhof",
    "Lindenhof",
    "Morgenrot",
];

fn prefixes(business: BusinessType, swiss: bool) -> &'static [&'static str] {
    match (business, swiss) {
        (BusinessType::Restaurant, false) => &[
            "Gasthaus",
            "Restaurant",
            "Wirtshaus",
            "Landgasthof",
            "Brauhaus",
            "Trattoria",
            "Bistro",
            "Weinstube",
        ],
        (BusinessType::Restaurant, true) => &[
            "Restaurant",
            "Gasthaus",
            "Wirtschaft",
            "Landgasthof",
            "Zunfthaus",
            "Bistro",
            "Trattoria",
            "Beizli",
        ],
        (BusinessType::Hotel, false) => &[
            "Hotel",
            "Landhotel",
            "Parkhotel",
            "Hotel Garni",
            "Seehotel",
            "Romantikhotel",
        ],
        (BusinessType::Hotel, true) => &[
            "Hotel",
            "Berghotel",
            "Seehotel",
            "Parkhotel",
            "Hotel Garni",
            "Kurhaus",
        ],
        (BusinessType::Canteen, false) => &[
            "Kantine",
            "Betriebsrestaurant",
            "Mensa",
            "Klinikküche",
            "Kita-Küche",
            "Casino",
        ],
        (BusinessType::Canteen, true) => &[
            "Personalrestaurant",
            "Mensa",
            "Betriebsrestaurant",
            "Spitalküche",
            "Kantine",
        ],
        (BusinessType::Catering, _) => &[
            "Catering",
            "Partyservice",
            "Eventcatering",
            "Menüservice",
            "Festküche",
        ],
        (BusinessType::Other, _) => &[
            "Café",
            "Bäckerei-Café",
            "Feinkost",
            "Metzgerei",
            "Imbiss",
            "Konditorei",
        ],
    }
}

fn descriptions(t: ActivityType) -> &'static [&'static str] {
    match t {
        ActivityType::Call => &[
            "Erstgespräch mit der Küchenleitung",
            "Telefonat: Interesse an regionalem Gemüse",
            "Rückruf wegen Liefertagen",
            "Telefonat mit dem Einkauf, Preisrahmen besprochen",
            "Kurz angerufen, Küchenchef meldet sich nächste Woche",
            "Telefonat zur Saisonkarte",
        ],
        ActivityType::Email => &[
            "Produktkatalog per E-Mail gesendet",
            "Preisliste und Lieferbedingungen geschickt",
            "Angebot für die Wochenlieferung gesendet",
            "Infos zu Bio-Zertifikaten nachgereicht",
        ],
        ActivityType::EmailReceived => &[
            "Rückfrage zu Lieferzeiten",
            "Anfrage nach glutenfreien Produkten",
            "Bitte um Angebot für das Sommerfest",
            "Antwort auf den Katalog: Interesse an Milchprodukten",
        ],
        ActivityType::Meeting => &[
            "Termin vor Ort, Küche besichtigt",
            "Verkostung im Betrieb",
            "Gespräch mit Geschäftsführung und Küchenchef",
            "Treffen am Messestand",
        ],
        ActivityType::SampleSent => &[
            "Musterbox Saisongemüse versendet",
            "Probierpaket Käse und Feinkost geschickt",
            "Muster Tiefkühl-Backwaren versendet",
        ],
        ActivityType::SampleFeedback => &[
            "Feedback zur Musterbox: Qualität überzeugt",
            "Muster gut angekommen, Preis noch zu hoch",
            "Küchenteam begeistert von den Backwaren",
        ],
        ActivityType::Order => &[
            "Erste Probebestellung aufgegeben",
            "Rahmenvertrag unterschrieben, erste Lieferung geplant",
        ],
        ActivityType::Note => &[
            "Küchenchef wechselt im Sommer",
            "Entscheidung liegt bei der Geschäftsführung",
            "Budget erst ab dem nächsten Quartal",
            "Beliefert derzeit vom Mitbewerber, Vertrag läuft aus",
            "Betriebsferien beachten",
        ],
        _ => &[],
    }
}

const STOP_REASONS: &[&str] = &[
    "Betriebsferien bis Saisonbeginn",
    "Umbau der Küche, Wiedereröffnung geplant",
    "Ausschreibung läuft, Entscheidung abwarten",
    "Inhaberwechsel, neuer Ansprechpartner folgt",
];

// ---------------------------------------------------------------------------------------------
// Randomness
// ---------------------------------------------------------------------------------------------

/// xorshift64* — small, fast, and the same numbers on every machine.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // splitmix64 once, so small seeds do not start with a run of zero bits.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        debug_assert!(lo <= hi);
        let span = (hi - lo) as u64 + 1;
        lo + (self.next_u64() % span) as i64
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len() as i64 - 1) as usize]
    }

    /// A pick by weights.
    fn weighted<T: Copy>(&mut self, items: &[(T, u32)]) -> T {
        let total: u32 = items.iter().map(|(_, w)| w).sum();
        let mut roll = self.range(0, i64::from(total) - 1) as u32;
        for (item, w) in items {
            if roll < *w {
                return *item;
            }
            roll -= w;
        }
        items[items.len() - 1].0
    }

    fn days(&mut self, lo: i64, hi: i64) -> Duration {
        Duration::seconds(self.range(lo * 86_400, hi * 86_400))
    }
}

/// `day` at a working hour (07:00–16:59 UTC, i.e. office hours in Berlin and Zurich).
fn work_time(rng: &mut Rng, day: OffsetDateTime) -> OffsetDateTime {
    let time = Time::from_hms(
        rng.range(7, 16) as u8,
        rng.range(0, 59) as u8,
        rng.range(0, 59) as u8,
    )
    .unwrap_or(Time::MIDNIGHT);
    day.replace_time(time)
}

/// ASCII slug for email domains: `Gasthaus Zur Post Köln` → `gasthaus-zur-post-koeln`.
fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.to_lowercase().chars() {
        match c {
            'a'..='z' | '0'..='9' => out.push(c),
            'ä' => out.push_str("ae"),
            'ö' => out.push_str("oe"),
            'ü' => out.push_str("ue"),
            'ß' => out.push_str("ss"),
            'é' | 'è' | 'ê' => out.push('e'),
            'à' | 'â' => out.push('a'),
            _ => {
                if !out.is_empty() && !out.ends_with('-') {
                    out.push('-');
                }
            }
        }
    }
    let mut s = out.trim_end_matches('-').to_owned();
    s.truncate(50);
    s.trim_end_matches('-').to_owned()
}

// ---------------------------------------------------------------------------------------------
// The dataset
// ---------------------------------------------------------------------------------------------

/// A follow-up record with the lead it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SeededFollowUp {
    pub(crate) lead_id: Uuid,
    pub(crate) territory: TerritoryId,
    pub(crate) record: FollowUpRecord,
}

/// Everything [`load`] writes.
#[derive(Debug, Clone)]
pub(crate) struct Dataset {
    pub(crate) leads: Vec<Lead>,
    pub(crate) activities: Vec<Activity>,
    pub(crate) followups: Vec<SeededFollowUp>,
}

/// Who performs a step, resolved when it happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// The owner at that moment (nobody once the lead expired).
    Owner,
    /// The first collaborator.
    Collaborator,
    /// The manager of the lead's territory.
    Manager,
}

/// Something a user does to a lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Contact(ActivityType, Who),
    Status(LeadStatus),
    AddCollaborator,
    StopClock,
    ResumeClock,
    Reopen,
    Delete,
    Unsubscribe,
    UpdateData,
}

#[derive(Debug, Clone, Copy)]
struct Step {
    at: OffsetDateTime,
    seq: u64,
    act: Act,
}

/// Reactions drawn up front, applied when the sweep moves the lead.
#[derive(Debug, Clone, Copy, Default)]
struct Traits {
    /// A contact during the REMINDER grace window.
    reactivate: bool,
    /// Qualification during the GRACE_PERIOD.
    qualify_in_grace: bool,
    /// A manager reopens the lead after it expired.
    reopen: bool,
}

/// One lead's life in progress.
struct Sim {
    lead: Lead,
    t3: Option<FollowUpRecord>,
    t7: Option<FollowUpRecord>,
    /// The simulated time: everything before it has happened.
    cursor: OffsetDateTime,
    steps: Vec<Step>,
    traits: Traits,
}

impl Sim {
    fn facts(&self) -> SweepFacts<'_> {
        SweepFacts {
            status: self.lead.status,
            registered_at: self.lead.registered_at,
            last_meaningful_contact_at: self.lead.last_meaningful_contact_at,
            protection: &self.lead.protection,
        }
    }

    fn access(&self) -> LeadFacts<'_> {
        LeadFacts {
            territory: self.lead.territory,
            owner: self.lead.owner.as_ref(),
            collaborators: &self.lead.collaborators,
        }
    }

    fn next_at(&self) -> Option<OffsetDateTime> {
        self.steps.iter().map(|s| s.at).min()
    }

    fn pop(&mut self) -> Option<Step> {
        let i = (0..self.steps.len()).min_by_key(|&i| (self.steps[i].at, self.steps[i].seq))?;
        Some(self.steps.swap_remove(i))
    }
}

/// What the follow-up planner sees of a lead (what a follow-up store adapter would read).
pub(crate) fn candidate(
    lead: &Lead,
    t3: Option<FollowUpRecord>,
    t7: Option<FollowUpRecord>,
) -> Candidate {
    Candidate {
        lead_id: lead.id,
        version: lead.version,
        territory: lead.territory,
        status: lead.status,
        clock_stopped: lead.protection.is_stopped(),
        registered_at: lead.registered_at,
        email: lead.data.email.as_ref().map(|e| e.as_str().to_owned()),
        email_consent: lead.data.email_consent,
        last_meaningful_contact_at: lead.last_meaningful_contact_at,
        business_type: lead.data.business_type,
        company_name: lead.data.company_name.as_str().to_owned(),
        contact_person: lead.data.contact_person.clone(),
        t3,
        t7,
    }
}

fn user(id: &str) -> UserId {
    UserId::parse(id).unwrap_or_else(|e| unreachable!("demo user ids are valid: {e}"))
}

fn mark(record: &FollowUpRecord) -> FollowUpMark {
    FollowUpMark {
        status: record.status.as_str().to_owned(),
        processed_at: record.processed_at,
        reason: record.reason.map(|r| r.as_str().to_owned()),
    }
}

struct Generator {
    rng: Rng,
    now: OffsetDateTime,
    policy: ProtectionPolicy,
    /// Ids are UUID v7 from the simulated time plus this counter and random bits: unique,
    /// time-ordered, reproducible.
    id_seq: u64,
    step_seq: u64,
    company_keys: HashSet<String>,
    email_keys: HashSet<String>,
    admin: Actor,
    system: Actor,
    managers: BTreeMap<TerritoryId, Actor>,
    leads: Vec<Lead>,
    activities: Vec<Activity>,
    followups: Vec<SeededFollowUp>,
}

/// Generates the demo history of `count` leads up to `now`. Pure and deterministic.
pub(crate) fn generate(now: OffsetDateTime, count: usize, seed: u64) -> Dataset {
    // Whole seconds: what PostgreSQL stores (microseconds) reads back unchanged.
    let now = now.replace_nanosecond(0).unwrap_or(now);
    let mut g = Generator {
        rng: Rng::new(seed),
        now,
        policy: ProtectionPolicy::default(),
        id_seq: 0,
        step_seq: 0,
        company_keys: HashSet::new(),
        email_keys: HashSet::new(),
        admin: Actor::new(user(ADMIN), [Role::Admin], []),
        system: Actor::system(),
        managers: [
            (
                TerritoryId::De,
                Actor::new(user(MANAGER_DE), [Role::Manager], [TerritoryId::De]),
            ),
            (
                TerritoryId::Ch,
                Actor::new(user(MANAGER_CH), [Role::Manager], [TerritoryId::Ch]),
            ),
        ]
        .into_iter()
        .collect(),
        leads: Vec::with_capacity(count),
        activities: Vec::new(),
        followups: Vec::new(),
    };
    for i in 0..count {
        // One generator per lead: a lead's data (name, town, owner, …) does not depend on how
        // the histories of the leads before it played out, so it is the same whatever `now` is.
        g.rng = Rng::new(seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        g.lead();
    }
    g.leads.sort_by_key(|l| (l.created_at, l.id));
    Dataset {
        leads: g.leads,
        activities: g.activities,
        followups: g.followups,
    }
}

fn reps(territory: TerritoryId) -> &'static [&'static str] {
    match territory {
        TerritoryId::Ch => &REPS_CH,
        _ => &REPS_DE,
    }
}

fn rep(id: &str, territory: TerritoryId) -> Actor {
    Actor::new(user(id), [Role::Sales], [territory])
}

impl Generator {
    fn id(&mut self, at: OffsetDateTime) -> Uuid {
        self.id_seq += 1;
        let mut bytes = [0u8; 10];
        bytes[..4].copy_from_slice(&(self.id_seq as u32).to_be_bytes());
        bytes[4..].copy_from_slice(&self.rng.next_u64().to_be_bytes()[..6]);
        let millis = u64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        uuid::Builder::from_unix_timestamp_millis(millis, &bytes).into_uuid()
    }

    /// Schedules `act`. A step drawn before the simulated present (a working hour earlier on
    /// the same day, say) moves to the same hour of a later day: history happens in order.
    fn step(&mut self, sim: &mut Sim, mut at: OffsetDateTime, act: Act) {
        while at < sim.cursor {
            at += Duration::days(1);
        }
        if at <= self.now {
            self.step_seq += 1;
            sim.steps.push(Step {
                at,
                seq: self.step_seq,
                act,
            });
        }
    }

    /// The timeline entries of a change, as `LeadService` writes them.
    fn record(&mut self, lead: &Lead, actor: &Actor, changes: Changes, at: OffsetDateTime) {
        for entry in changes.timeline {
            let id = self.id(at);
            self.activities.push(Activity::system(
                id,
                lead.id,
                entry.activity_type,
                at,
                actor.user_id().clone(),
                entry.description,
                entry.metadata,
            ));
        }
    }

    fn lead(&mut self) {
        let (data, territory) = self.lead_data();
        let owner_id = *self.rng.pick(reps(territory));
        let owner = rep(owner_id, territory);

        // Registrations spread over the last eight months, a little denser recently.
        let back = self.rng.unit().powf(1.15) * HISTORY_DAYS as f64;
        let day = self.now - Duration::seconds((back * 86_400.0) as i64);
        let mut registered_at = work_time(&mut self.rng, day);
        if registered_at > self.now {
            registered_at = self.now - Duration::minutes(self.rng.range(5, 600));
        }

        // A few leads come from an import: created later by the admin, registration backdated.
        let import = data.source == LeadSource::Import;
        let created_at = if import {
            (registered_at + self.rng.days(1, 12)).min(self.now)
        } else {
            registered_at
        };
        let creator = if import {
            self.admin.clone()
        } else {
            owner.clone()
        };
        let id = self.id(created_at);
        let (mut lead, changes) = Lead::register(
            id,
            data,
            &creator,
            import.then_some(registered_at),
            created_at,
        )
        .unwrap_or_else(|e| unreachable!("demo lead data is valid: {e}"));
        self.record(&lead, &creator, changes, created_at);
        if import {
            let admin = self.admin.clone();
            let changes = lead
                .reassign(owner.user_id().clone(), &admin, created_at)
                .unwrap_or_else(|e| unreachable!("a new lead can be reassigned: {e}"));
            self.record(&lead, &admin, changes, created_at);
        }

        let mut sim = Sim {
            lead,
            t3: None,
            t7: None,
            cursor: created_at,
            steps: Vec::new(),
            traits: Traits::default(),
        };
        self.plan_life(&mut sim);
        self.run(&mut sim);

        let Sim {
            mut lead, t3, t7, ..
        } = sim;
        lead.follow_ups.t3 = t3.as_ref().map(mark);
        lead.follow_ups.t7 = t7.as_ref().map(mark);
        self.leads.push(lead);
    }

    fn lead_data(&mut self) -> (LeadData, TerritoryId) {
        let (country, towns, streets) = self.rng.weighted(&[
            (("DE", TOWNS_DE, STREETS_DE), 70),
            (("CH", TOWNS_CH, STREETS_CH), 28),
            (("LI", TOWNS_LI, STREETS_CH), 2),
        ]);
        let swiss = country != "DE";
        let business = self.rng.weighted(&[
            (BusinessType::Restaurant, 35),
            (BusinessType::Hotel, 20),
            (BusinessType::Canteen, 15),
            (BusinessType::Catering, 15),
            (BusinessType::Other, 15),
        ]);
        let first = *self.rng.pick(FIRST_NAMES);
        let last = *self.rng.pick(LAST_NAMES);

        // A company name that is no duplicate (SPEC §4.2) of an earlier one.
        let mut attempt = 0;
        let (mut data, town) = loop {
            attempt += 1;
            let town = self.rng.pick(towns);
            let postal_code = *self.rng.pick(town.postal_codes);
            let prefix = *self.rng.pick(prefixes(business, swiss));
            let core = match business {
                BusinessType::Restaurant | BusinessType::Hotel => *self.rng.pick(INN_NAMES),
                BusinessType::Canteen => *self.rng.pick(INSTITUTIONS),
                BusinessType::Catering => *self.rng.pick(LAST_NAMES),
                BusinessType::Other => {
                    if self.rng.chance(0.5) {
                        *self.rng.pick(SHOP_NAMES)
                    } else {
                        *self.rng.pick(LAST_NAMES)
                    }
                }
            };
            let mut name = format!("{prefix} {core}");
            if (business == BusinessType::Canteen && self.rng.chance(0.6)) || attempt > 8 {
                name = format!("{name} {}", town.name);
            }
            if attempt > 16 {
                name = format!("{name} {attempt}");
            }
            if self.rng.chance(0.3) {
                let form = if swiss {
                    *self.rng.pick(&["AG", "GmbH"])
                } else {
                    *self
                        .rng
                        .pick(&["GmbH", "GmbH & Co. KG", "KG", "e.K.", "UG"])
                };
                name = format!("{name} {form}");
            }
            let company = CompanyName::parse(&name)
                .unwrap_or_else(|e| unreachable!("demo company names are valid: {e}"));
            let mut data = LeadData::new(company, country)
                .unwrap_or_else(|e| unreachable!("demo countries are valid: {e}"));
            data.postal_code = Some(postal_code.to_owned());
            let key = format!("{:?}", data.duplicate_keys().company);
            if self.company_keys.insert(key) {
                break (data, town);
            }
        };
        let territory = data
            .territory()
            .unwrap_or_else(|e| unreachable!("demo countries have a territory: {e}"));

        data.city = Some(town.name.to_owned());
        let house = self.rng.range(1, 140);
        data.street = Some(format!("{} {house}", self.rng.pick(streets)));
        data.business_type = Some(business);
        if self.rng.chance(0.9) {
            data.contact_person = Some(format!("{first} {last}"));
        }
        let tld = match country {
            "DE" => "de",
            "CH" => "ch",
            _ => "li",
        };
        let company = data.company_name.normalised();
        let domain = if company.contains(&town.name.to_lowercase()) {
            slug(&company)
        } else {
            slug(&format!("{company} {}", town.name))
        };
        let domain = format!("{domain}.{tld}");
        if self.rng.chance(0.6) {
            data.website = Some(format!("https://www.{domain}"));
        }
        if self.rng.chance(0.88) {
            let local = if data.contact_person.is_some() && self.rng.chance(0.4) {
                format!("{}.{}", slug(first), slug(last))
            } else {
                match business {
                    BusinessType::Hotel => {
                        (*self.rng.pick(&["info", "reservierung", "kueche"])).to_owned()
                    }
                    BusinessType::Canteen => {
                        (*self.rng.pick(&["einkauf", "kueche", "verpflegung"])).to_owned()
                    }
                    _ => (*self.rng.pick(&["info", "kueche", "bestellung"])).to_owned(),
                }
            };
            let address = format!("{local}@{domain}");
            if let Ok(email) = Email::parse(&address)
                && self.email_keys.insert(email.normalised())
            {
                data.email = Some(email);
                data.email_consent = self.rng.chance(0.8);
            }
        }
        if self.rng.chance(0.85) {
            let digits = self.rng.range(1_000_000, 9_999_999);
            data.phone = Some(match country {
                "DE" => format!("+49 {} {digits}", town.area_code),
                "CH" => format!(
                    "+41 {} {:03} {:02} {:02}",
                    town.area_code,
                    digits / 10_000 % 1_000,
                    digits / 100 % 100,
                    digits % 100
                ),
                _ => format!(
                    "+423 {:03} {:02} {:02}",
                    digits / 10_000 % 1_000,
                    digits / 100 % 100,
                    digits % 100
                ),
            });
        }
        let size = match business {
            BusinessType::Canteen | BusinessType::Hotel => self.rng.weighted(&[
                (KitchenSize::Small, 15),
                (KitchenSize::Medium, 45),
                (KitchenSize::Large, 40),
            ]),
            BusinessType::Other => self.rng.weighted(&[
                (KitchenSize::Small, 70),
                (KitchenSize::Medium, 25),
                (KitchenSize::Large, 5),
            ]),
            _ => self.rng.weighted(&[
                (KitchenSize::Small, 35),
                (KitchenSize::Medium, 45),
                (KitchenSize::Large, 20),
            ]),
        };
        if self.rng.chance(0.92) {
            data.kitchen_size = Some(size);
        }
        let (staff_lo, staff_hi) = match size {
            KitchenSize::Small => (2, 12),
            KitchenSize::Medium => (8, 40),
            KitchenSize::Large => (30, 180),
        };
        if self.rng.chance(0.8) {
            data.employee_count = Some(self.rng.range(staff_lo, staff_hi) as i32);
        }
        let (lo, hi) = match business {
            BusinessType::Restaurant => (80, 600),
            BusinessType::Hotel => (200, 2_500),
            BusinessType::Canteen => (300, 4_000),
            BusinessType::Catering => (150, 1_500),
            BusinessType::Other => (30, 400),
        };
        let factor = match size {
            KitchenSize::Small => 1,
            KitchenSize::Medium => 2,
            KitchenSize::Large => 4,
        };
        if self.rng.chance(0.9) {
            // Hundreds of EUR/CHF per year, in cents.
            let hundreds = self.rng.range(lo, hi) * factor;
            data.estimated_volume = Volume::from_cents(hundreds * 100 * 100).ok();
        }
        data.industry = Some(
            match business {
                BusinessType::Restaurant => "Gastronomie",
                BusinessType::Hotel => "Hotellerie",
                BusinessType::Canteen => "Gemeinschaftsverpflegung",
                BusinessType::Catering => "Catering",
                BusinessType::Other => "Lebensmittelhandwerk",
            }
            .to_owned(),
        );
        data.source = self.rng.weighted(&[
            (LeadSource::Web, 33),
            (LeadSource::Email, 10),
            (LeadSource::Phone, 15),
            (LeadSource::Event, 15),
            (LeadSource::Partner, 20),
            (LeadSource::Import, 7),
        ]);
        data.source_campaign = match data.source {
            LeadSource::Event if swiss => Some(*self.rng.pick(&["IGEHO 2025", "Gastia 2026"])),
            LeadSource::Event => {
                Some(
                    *self
                        .rng
                        .pick(&["Internorga 2026", "INTERGASTRA 2026", "Anuga 2025"]),
                )
            }
            LeadSource::Web if self.rng.chance(0.5) => {
                Some(*self.rng.pick(&["Google Ads Frühjahr", "Newsletter März"]))
            }
            LeadSource::Partner => Some(
                *self
                    .rng
                    .pick(&["Empfehlung Getränkehandel", "Partnerprogramm Großhandel"]),
            ),
            LeadSource::Import => Some("CSV-Import Altbestand"),
            _ => None,
        }
        .map(str::to_owned);
        (data, territory)
    }

    /// Draws the lead's life: its contact cadence, decisions and incidents.
    fn plan_life(&mut self, sim: &mut Sim) {
        let start = sim.cursor;
        let r = &mut self.rng;
        sim.traits = Traits {
            reactivate: r.chance(0.45),
            qualify_in_grace: r.chance(0.3),
            reopen: r.chance(0.2),
        };
        let first_contact = start + Duration::seconds(r.range(2 * 3_600, 12 * 86_400));
        let profile = r.unit();
        let mut contacts = Vec::new();
        if profile < 0.02 {
            // Junk or a duplicate by another spelling: deleted by its owner.
            let at = start + self.rng.days(1, 20);
            self.step(sim, at, Act::Delete);
        } else if profile < 0.08 {
            // Lost after a few contacts.
            let mut t = first_contact;
            for _ in 0..self.rng.range(1, 3) {
                contacts.push(t);
                t += self.rng.days(4, 20);
            }
            self.step(sim, t, Act::Status(LeadStatus::Lost));
        } else if profile < 0.24 {
            // A quick closer: qualified within weeks, then converted, lost or still open.
            let mut t = first_contact;
            let qualify = start + self.rng.days(14, 60);
            let end = qualify + self.rng.days(10, 60);
            while t < end {
                contacts.push(t);
                t += self.rng.days(4, 18);
            }
            self.step(sim, qualify, Act::Status(LeadStatus::Qualified));
            self.close(sim, end);
        } else if profile < 0.58 {
            // A diligent owner: contacts every few weeks, sometimes a gap that is too long.
            let mut t = first_contact;
            while t < self.now {
                contacts.push(t);
                t += if self.rng.chance(0.1) {
                    self.rng.days(58, 80)
                } else {
                    self.rng.days(8, 48)
                };
            }
            let decision = self.rng.unit();
            if decision < 0.22 {
                let qualify = start + self.rng.days(50, 170);
                self.step(sim, qualify, Act::Status(LeadStatus::Qualified));
                let end = qualify + self.rng.days(10, 70);
                self.close(sim, end);
            } else if decision < 0.3 {
                let at = start + self.rng.days(30, 170);
                self.step(sim, at, Act::Status(LeadStatus::Lost));
            }
        } else {
            // Lapsing: a few early contacts, then silence (reminder, perhaps expiry).
            let mut t = first_contact;
            for _ in 0..self.rng.range(0, 3) {
                contacts.push(t);
                t += self.rng.days(3, 15);
            }
            if self.rng.chance(0.06) {
                let at = t + self.rng.days(2, 20);
                self.step(sim, at, Act::Status(LeadStatus::Lost));
            }
        }
        let mut sample_sent = false;
        for (i, at) in contacts.into_iter().enumerate() {
            let kind = if i == 0 {
                self.rng.weighted(&[
                    (ActivityType::Call, 50),
                    (ActivityType::Email, 30),
                    (ActivityType::EmailReceived, 10),
                    (ActivityType::Meeting, 10),
                ])
            } else {
                let k = self.rng.weighted(&[
                    (ActivityType::Call, 30),
                    (ActivityType::Email, 20),
                    (ActivityType::EmailReceived, 15),
                    (ActivityType::Meeting, 15),
                    (ActivityType::SampleSent, 12),
                    (ActivityType::SampleFeedback, 8),
                ]);
                match k {
                    ActivityType::SampleFeedback if !sample_sent => ActivityType::Call,
                    other => other,
                }
            };
            sample_sent |= kind == ActivityType::SampleSent;
            let at = work_time(&mut self.rng, at);
            self.step(sim, at, Act::Contact(kind, Who::Owner));
        }

        // Incidents.
        if self.rng.chance(0.35) {
            for _ in 0..self.rng.range(1, 2) {
                let day = start + self.rng.days(1, 120);
                let at = work_time(&mut self.rng, day);
                self.step(sim, at, Act::Contact(ActivityType::Note, Who::Owner));
            }
        }
        if self.rng.chance(0.12) {
            let at = start + self.rng.days(1, 30);
            self.step(sim, at, Act::AddCollaborator);
        }
        if self.rng.chance(0.06) {
            let stop = start + self.rng.days(10, 110);
            self.step(sim, stop, Act::StopClock);
            if self.rng.chance(0.7) {
                let resume = stop + self.rng.days(10, 60);
                self.step(sim, resume, Act::ResumeClock);
            }
        }
        if self.rng.chance(0.1) {
            let at = start + self.rng.days(2, 60);
            self.step(sim, at, Act::UpdateData);
        }
        if self.rng.chance(0.03) {
            let at = start + self.rng.days(4, 25);
            self.step(sim, at, Act::Unsubscribe);
        }
    }

    /// After qualification: an order and conversion, a loss, or still open.
    fn close(&mut self, sim: &mut Sim, at: OffsetDateTime) {
        let roll = self.rng.unit();
        if roll < 0.6 {
            let at = work_time(&mut self.rng, at);
            self.step(sim, at, Act::Contact(ActivityType::Order, Who::Owner));
            self.step(
                sim,
                at + Duration::minutes(20),
                Act::Status(LeadStatus::Converted),
            );
        } else if roll < 0.85 {
            self.step(sim, at, Act::Status(LeadStatus::Lost));
        }
    }

    /// Replays the lead's history in time order: before each user step, every automatic event
    /// due by then; new steps that reactions schedule join the queue in order.
    fn run(&mut self, sim: &mut Sim) {
        loop {
            let until = sim.next_at().unwrap_or(self.now);
            if self.automatic(sim, until) {
                continue;
            }
            let Some(step) = sim.pop() else {
                break;
            };
            debug_assert!(step.at >= sim.cursor, "steps happen in order");
            sim.cursor = step.at;
            self.apply(sim, step.act, step.at);
        }
        sim.cursor = self.now;
    }

    /// Applies the next automatic event due by `until`, if there is one: the protection sweep at
    /// the instant the domain names (`next_due`), or a follow-up stage when the planner says it
    /// is processed. Returns whether it applied one.
    fn automatic(&mut self, sim: &mut Sim, until: OffsetDateTime) -> bool {
        let sweep_at = next_due(&sim.facts(), &self.policy).map(|t| t.max(sim.cursor));
        let followup_at = match plan(&candidate(&sim.lead, sim.t3, sim.t7), sim.cursor) {
            Plan::Process { .. } => Some(sim.cursor),
            Plan::Waiting { send_at, .. } => Some(send_at),
            Plan::Ineligible | Plan::Complete => None,
        };
        let Some(at) = [sweep_at, followup_at]
            .into_iter()
            .flatten()
            .min()
            .filter(|t| *t <= until)
        else {
            return false;
        };
        sim.cursor = at;
        let applied = if sweep_at == Some(at) {
            self.sweep(sim, at)
        } else {
            self.followup(sim, at)
        };
        debug_assert!(applied, "the domain named {at} but did nothing");
        applied
    }

    fn sweep(&mut self, sim: &mut Sim, at: OffsetDateTime) -> bool {
        let changes = sim.lead.sweep(at, &self.policy);
        if changes.is_empty() {
            return false;
        }
        let system = self.system.clone();
        self.record(&sim.lead, &system, changes, at);
        match sim.lead.status {
            LeadStatus::Reminder if sim.traits.reactivate => {
                let kind = *self.rng.pick(&[
                    ActivityType::Call,
                    ActivityType::Meeting,
                    ActivityType::EmailReceived,
                ]);
                let day = at + self.rng.days(1, 8);
                let when = work_time(&mut self.rng, day);
                self.step(sim, when, Act::Contact(kind, Who::Owner));
            }
            LeadStatus::GracePeriod if sim.traits.qualify_in_grace => {
                let when = at + self.rng.days(1, 9);
                self.step(sim, when, Act::Status(LeadStatus::Qualified));
                let end = when + self.rng.days(7, 40);
                self.close(sim, end);
            }
            LeadStatus::Expired if sim.traits.reopen => {
                sim.traits.reopen = false;
                let day = at + self.rng.days(2, 25);
                let when = work_time(&mut self.rng, day);
                self.step(sim, when, Act::Reopen);
                let mut t = when + self.rng.days(0, 4);
                for _ in 0..self.rng.range(1, 4) {
                    let c = work_time(&mut self.rng, t);
                    self.step(sim, c, Act::Contact(ActivityType::Call, Who::Owner));
                    t += self.rng.days(10, 45);
                }
            }
            _ => {}
        }
        true
    }

    fn followup(&mut self, sim: &mut Sim, at: OffsetDateTime) -> bool {
        let mut c = candidate(&sim.lead, sim.t3, sim.t7);
        let Plan::Process { stage, outcome } = plan(&c, at) else {
            return false;
        };
        let Ok(record) = apply_outcome(&mut c, stage, outcome, at) else {
            return false;
        };
        match stage {
            Stage::T3 => sim.t3 = Some(record),
            Stage::T7 => sim.t7 = Some(record),
        }
        // The timeline entry the follow-up service writes (run id: one run per instant).
        let description = match record.reason {
            None => format!(
                "Follow-up {} gesendet an {}",
                stage.label(),
                c.mail_address().unwrap_or_default()
            ),
            Some(reason) => format!(
                "Follow-up {} übersprungen: {}",
                stage.label(),
                reason.label()
            ),
        };
        let run_id = uuid::Builder::from_unix_timestamp_millis(
            u64::try_from(at.unix_timestamp() * 1_000).unwrap_or(0),
            &[0; 10],
        )
        .into_uuid();
        let mut metadata = serde_json::json!({
            "stage": stage.as_str(),
            "status": record.status.as_str(),
            "runId": run_id,
        });
        if let Some(reason) = record.reason {
            metadata["reason"] = reason.as_str().into();
        }
        let id = self.id(at);
        self.activities.push(Activity::system(
            id,
            sim.lead.id,
            record.status.activity_type(),
            at,
            self.system.user_id().clone(),
            Some(description),
            metadata,
        ));
        self.followups.push(SeededFollowUp {
            lead_id: sim.lead.id,
            territory: sim.lead.territory,
            record,
        });
        true
    }

    fn actor(&self, sim: &Sim, who: Who) -> Option<Actor> {
        let t = sim.lead.territory;
        match who {
            Who::Owner => sim.lead.owner.as_ref().map(|o| rep(o.as_str(), t)),
            Who::Collaborator => sim.lead.collaborators.first().map(|c| rep(c.as_str(), t)),
            Who::Manager => self.managers.get(&t).cloned(),
        }
    }

    /// Performs a user step if the user may (access policy) and the domain accepts it;
    /// otherwise the step simply does not happen, as a refused request changes nothing.
    fn apply(&mut self, sim: &mut Sim, act: Act, at: OffsetDateTime) {
        if sim.lead.is_deleted() {
            return;
        }
        // `None`: the system (the unsubscribe link needs no login).
        let (who, action) = match act {
            Act::Contact(_, who) => (Some(who), Action::LogActivity),
            Act::Status(_) | Act::AddCollaborator | Act::UpdateData => {
                (Some(Who::Owner), Action::Update)
            }
            Act::Delete => (Some(Who::Owner), Action::Delete),
            Act::StopClock | Act::ResumeClock | Act::Reopen => {
                (Some(Who::Manager), Action::ManageProtection)
            }
            Act::Unsubscribe => (None, Action::Update),
        };
        let actor = match who {
            None => self.system.clone(),
            Some(who) => match self.actor(sim, who) {
                Some(actor) => actor,
                None => return,
            },
        };
        if access::decide(&actor, &sim.access(), action) != Decision::Allow {
            return;
        }
        let before = sim.lead.clone();
        let result = match act {
            Act::Contact(kind, _) => {
                // Reps stop working leads that are closed or taken from them.
                let closed = matches!(
                    sim.lead.status,
                    LeadStatus::Converted | LeadStatus::Lost | LeadStatus::Expired
                );
                if closed && kind != ActivityType::Note {
                    return;
                }
                let description = Some((*self.rng.pick(descriptions(kind))).to_owned());
                let id = self.id(at);
                self.activities.push(Activity {
                    id,
                    lead_id: sim.lead.id,
                    activity_type: kind,
                    occurred_at: at,
                    description,
                    user_id: actor.user_id().clone(),
                    meaningful_contact: kind.is_meaningful_contact(),
                    metadata: serde_json::json!({}),
                    created_at: at,
                });
                if kind == ActivityType::SampleSent && self.rng.chance(0.6) {
                    let day = at + self.rng.days(3, 12);
                    let when = work_time(&mut self.rng, day);
                    self.step(
                        sim,
                        when,
                        Act::Contact(ActivityType::SampleFeedback, Who::Owner),
                    );
                }
                Ok(sim.lead.record_activity(kind, at, &actor, at))
            }
            Act::Status(to) => sim.lead.apply_patch(
                LeadPatch {
                    status: Some(to),
                    ..LeadPatch::default()
                },
                &actor,
                at,
            ),
            Act::AddCollaborator => {
                let owner = sim.lead.owner.clone();
                let others: Vec<&str> = reps(sim.lead.territory)
                    .iter()
                    .copied()
                    .filter(|r| owner.as_ref().is_none_or(|o| o.as_str() != *r))
                    .collect();
                let colleague = *self.rng.pick::<&str>(&others);
                let colleague = user(colleague);
                let result = sim.lead.apply_patch(
                    LeadPatch {
                        collaborator_user_ids: Some([colleague].into_iter().collect()),
                        ..LeadPatch::default()
                    },
                    &actor,
                    at,
                );
                for _ in 0..self.rng.range(1, 2) {
                    let day = at + self.rng.days(2, 40);
                    let when = work_time(&mut self.rng, day);
                    let kind = *self.rng.pick(&[ActivityType::Meeting, ActivityType::Call]);
                    self.step(sim, when, Act::Contact(kind, Who::Collaborator));
                }
                result
            }
            Act::StopClock => {
                let reason = *self.rng.pick(STOP_REASONS);
                sim.lead.stop_clock(reason, &actor, at)
            }
            Act::ResumeClock => sim.lead.resume_clock(&actor, at),
            Act::Reopen => {
                let new_owner = *self.rng.pick::<&str>(reps(sim.lead.territory));
                let new_owner = user(new_owner);
                sim.lead.apply_patch(
                    LeadPatch {
                        status: Some(LeadStatus::Active),
                        owner_user_id: Some(new_owner),
                        ..LeadPatch::default()
                    },
                    &actor,
                    at,
                )
            }
            Act::Delete => sim.lead.soft_delete(&actor, at),
            Act::Unsubscribe => Ok(sim.lead.withdraw_consent(&actor, at)),
            Act::UpdateData => {
                let mut patch = LeadPatch::default();
                if sim.lead.data.phone.is_none() {
                    // A mobile number.
                    let digits = self.rng.range(1_000_000, 9_999_999);
                    patch.phone = Some(Some(match sim.lead.territory {
                        TerritoryId::Ch => format!(
                            "+41 79 {:03} {:02} {:02}",
                            digits / 10_000 % 1_000,
                            digits / 100 % 100,
                            digits % 100
                        ),
                        _ => format!("+49 171 {digits}"),
                    }));
                }
                patch.employee_count = Some(Some(self.rng.range(3, 120) as i32));
                sim.lead.apply_patch(patch, &actor, at)
            }
        };
        match result {
            Ok(changes) => self.record(&sim.lead, &actor, changes, at),
            Err(_) => sim.lead = before,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The database
// ---------------------------------------------------------------------------------------------

/// Row counts of a demo database, read in the `system` context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stats {
    pub(crate) leads: i64,
    pub(crate) leads_de: i64,
    pub(crate) leads_ch: i64,
    pub(crate) activities: i64,
    pub(crate) followups: i64,
}

/// Counts the rows of the lead tables.
pub(crate) async fn stats(pool: &PgPool) -> Result<Stats> {
    let mut tx = freshplan_store_postgres::begin_as(pool, &Actor::system()).await?;
    let (leads, leads_de, leads_ch, activities, followups): (i64, i64, i64, i64, i64) =
        sqlx::query_as(
            "select (select count(*) from leads), \
                    (select count(*) from leads where territory_id = 'DE'), \
                    (select count(*) from leads where territory_id = 'CH'), \
                    (select count(*) from activities), \
                    (select count(*) from followups)",
        )
        .fetch_one(&mut *tx)
        .await
        .context("counting the demo data")?;
    tx.rollback().await?;
    Ok(Stats {
        leads,
        leads_de,
        leads_ch,
        activities,
        followups,
    })
}

/// Rows per bulk statement.
const CHUNK: usize = 4_000;

/// Writes `data` in one transaction as the `system` context: leads through the production
/// adapter, activities and follow-up records in bulk.
pub(crate) async fn load(pool: &PgPool, data: &Dataset) -> Result<()> {
    let store = PgLeadStore::new(pool.clone());
    let mut tx = store.begin(&Actor::system()).await?;
    for lead in &data.leads {
        tx.insert(lead)
            .await
            .with_context(|| format!("inserting lead {}", lead.data.company_name.as_str()))?;
    }
    let conn = tx.connection().await?;
    for chunk in data.activities.chunks(CHUNK) {
        sqlx::query(
            "insert into activities \
               (id, lead_id, territory_id, type, occurred_at, description, user_id, \
                meaningful_contact, metadata, created_at) \
             select a.id, a.lead_id, l.territory_id, a.type, a.occurred_at, a.description, \
                    a.user_id, a.meaningful_contact, a.metadata::jsonb, a.created_at \
               from unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::text[], \
                           $6::text[], $7::bool[], $8::text[], $9::timestamptz[]) \
                    as a(id, lead_id, type, occurred_at, description, user_id, \
                         meaningful_contact, metadata, created_at) \
               join leads l on l.id = a.lead_id",
        )
        .bind(chunk.iter().map(|a| a.id).collect::<Vec<_>>())
        .bind(chunk.iter().map(|a| a.lead_id).collect::<Vec<_>>())
        .bind(
            chunk
                .iter()
                .map(|a| a.activity_type.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(chunk.iter().map(|a| a.occurred_at).collect::<Vec<_>>())
        .bind(
            chunk
                .iter()
                .map(|a| a.description.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            chunk
                .iter()
                .map(|a| a.user_id.as_str().to_owned())
                .collect::<Vec<_>>(),
        )
        .bind(
            chunk
                .iter()
                .map(|a| a.meaningful_contact)
                .collect::<Vec<_>>(),
        )
        .bind(
            chunk
                .iter()
                .map(|a| a.metadata.to_string())
                .collect::<Vec<_>>(),
        )
        .bind(chunk.iter().map(|a| a.created_at).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await
        .context("inserting activities")?;
    }
    for chunk in data.followups.chunks(CHUNK) {
        sqlx::query(
            "insert into followups \
               (lead_id, territory_id, stage, status, reason, processed_at, created_at) \
             select f.lead_id, f.territory_id, f.stage, f.status, f.reason, f.processed_at, \
                    f.processed_at \
               from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], \
                           $6::timestamptz[]) \
                    as f(lead_id, territory_id, stage, status, reason, processed_at)",
        )
        .bind(chunk.iter().map(|f| f.lead_id).collect::<Vec<_>>())
        .bind(
            chunk
                .iter()
                .map(|f| f.territory.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            chunk
                .iter()
                .map(|f| f.record.stage.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            chunk
                .iter()
                .map(|f| f.record.status.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            chunk
                .iter()
                .map(|f| f.record.reason.map(|r| r.as_str()))
                .collect::<Vec<_>>(),
        )
        .bind(
            chunk
                .iter()
                .map(|f| f.record.processed_at)
                .collect::<Vec<_>>(),
        )
        .execute(&mut *conn)
        .await
        .context("inserting follow-up records")?;
    }
    // The leads' follow-up progress, as `PgFollowUpTx` writes it with each record: the next
    // stage (`Candidate::next_stage`: the first stage without a record), whether any was sent,
    // and the send times. The claim and the cockpit's counts (their triggers run here) read
    // these columns, not the records.
    sqlx::query(
        "update leads l \
            set followup_next_stage = case when f.t3 is null then 'T3' \
                                           when f.t7 is null then 'T7' end, \
                followup_sent = f.t3_sent_at is not null or f.t7_sent_at is not null, \
                followup_t3_sent_at = f.t3_sent_at, \
                followup_t7_sent_at = f.t7_sent_at \
           from (select lead_id, \
                        max(status) filter (where stage = 'T3') as t3, \
                        max(status) filter (where stage = 'T7') as t7, \
                        max(processed_at) filter (where stage = 'T3' and status = 'SENT') \
                            as t3_sent_at, \
                        max(processed_at) filter (where stage = 'T7' and status = 'SENT') \
                            as t7_sent_at \
                   from followups group by lead_id) f \
          where l.id = f.lead_id",
    )
    .execute(&mut *conn)
    .await
    .context("writing the leads' follow-up progress")?;
    tx.commit().await?;
    Ok(())
}

/// Seeds the demo data into a migrated database unless it already has leads. Returns the
/// dataset's size when it seeded, `None` when the database had data.
pub(crate) async fn seed_if_empty(pool: &PgPool, now: OffsetDateTime) -> Result<Option<Stats>> {
    if stats(pool).await?.leads > 0 {
        return Ok(None);
    }
    let data = generate(now, DEMO_LEADS, DEMO_SEED);
    load(pool, &data).await?;
    let seeded = stats(pool).await?;
    ensure!(
        seeded.leads == data.leads.len() as i64,
        "seeded {} leads, expected {}",
        seeded.leads,
        data.leads.len()
    );
    Ok(Some(seeded))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use freshplan_followup::stage::{FollowUpStatus, SkipReason};
    use freshplan_leads::ports::LeadQuery;
    use freshplan_leads::protection::next_transition;
    use sqlx::Connection as _;
    use time::macros::datetime;

    use super::*;

    /// A Wednesday morning; fixed so the tests are reproducible.
    const NOW: OffsetDateTime = datetime!(2026-05-20 09:41:07 UTC);

    fn dataset() -> Dataset {
        generate(NOW, DEMO_LEADS, DEMO_SEED)
    }

    #[test]
    fn generation_is_deterministic() {
        let a = generate(NOW, 200, 7);
        let b = generate(NOW, 200, 7);
        assert_eq!(a.leads, b.leads);
        assert_eq!(a.activities, b.activities);
        assert_eq!(a.followups, b.followups);
        let c = generate(NOW, 200, 8);
        assert_ne!(a.leads, c.leads);
    }

    #[test]
    fn the_same_leads_on_another_day() {
        let today = generate(NOW, 300, DEMO_SEED);
        let tomorrow = generate(NOW + Duration::days(1), 300, DEMO_SEED);
        let names = |d: &Dataset| {
            let mut v: Vec<(String, String, Option<String>, String)> = d
                .leads
                .iter()
                .map(|l| {
                    (
                        l.data.company_name.as_str().to_owned(),
                        l.data.country_code.clone(),
                        l.data.email.as_ref().map(|e| e.as_str().to_owned()),
                        l.created_by.as_str().to_owned(),
                    )
                })
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(&today), names(&tomorrow));
    }

    #[test]
    fn both_territories_many_reps_and_every_status() {
        let data = dataset();
        assert!(data.leads.len() >= 2_000);
        let de = data
            .leads
            .iter()
            .filter(|l| l.territory == TerritoryId::De)
            .count();
        let ch = data.leads.len() - de;
        assert!(de >= 1_000 && ch >= 400, "DE {de}, CH {ch}");
        assert!(data.leads.iter().any(|l| l.data.country_code == "LI"));
        for territory in [TerritoryId::De, TerritoryId::Ch] {
            let owners: BTreeSet<&str> = data
                .leads
                .iter()
                .filter(|l| l.territory == territory)
                .filter_map(|l| l.owner.as_ref().map(UserId::as_str))
                .collect();
            let expected: BTreeSet<&str> = reps(territory).iter().copied().collect();
            assert_eq!(owners, expected, "{territory:?}");
        }
        for status in LeadStatus::ALL {
            let n = data.leads.iter().filter(|l| l.status == status).count();
            assert!(n >= 5, "only {n} leads are {status}");
        }
        let stopped = data
            .leads
            .iter()
            .filter(|l| l.protection.is_stopped())
            .count();
        let paused = data
            .leads
            .iter()
            .filter(|l| l.protection.paused_seconds > 0)
            .count();
        let collaborating = data
            .leads
            .iter()
            .filter(|l| !l.collaborators.is_empty())
            .count();
        let imported = data
            .leads
            .iter()
            .filter(|l| l.registered_at < l.created_at)
            .count();
        let no_email = data.leads.iter().filter(|l| l.data.email.is_none()).count();
        let no_consent = data
            .leads
            .iter()
            .filter(|l| l.data.email.is_some() && !l.data.email_consent)
            .count();
        for (what, n) in [
            ("stopped clocks", stopped),
            ("resumed clocks", paused),
            ("collaborations", collaborating),
            ("imports", imported),
            ("leads without email", no_email),
            ("leads without consent", no_consent),
        ] {
            assert!(n >= 10, "only {n} {what}");
        }
        let oldest = data.leads.iter().map(|l| l.created_at).min().unwrap();
        assert!(NOW - oldest > Duration::days(200), "oldest {oldest}");
    }

    #[test]
    fn states_agree_with_the_domain_at_now() {
        let data = dataset();
        let policy = ProtectionPolicy::default();
        let mut company = HashSet::new();
        let mut email = HashSet::new();
        for lead in &data.leads {
            let facts = SweepFacts {
                status: lead.status,
                registered_at: lead.registered_at,
                last_meaningful_contact_at: lead.last_meaningful_contact_at,
                protection: &lead.protection,
            };
            assert_eq!(
                next_transition(&facts, NOW, &policy),
                None,
                "{} is overdue for the sweep",
                lead.id
            );
            assert!(lead.clone().sweep(NOW, &policy).is_empty());
            let record = |m: &Option<FollowUpMark>, stage| {
                m.as_ref().map(|m| FollowUpRecord {
                    stage,
                    status: m.status.parse().unwrap(),
                    reason: m.reason.as_deref().map(|r| r.parse().unwrap()),
                    processed_at: m.processed_at,
                })
            };
            let c = candidate(
                lead,
                record(&lead.follow_ups.t3, Stage::T3),
                record(&lead.follow_ups.t7, Stage::T7),
            );
            assert!(
                !matches!(plan(&c, NOW), Plan::Process { .. }),
                "{} has an overdue follow-up",
                lead.id
            );
            assert!(lead.follow_ups.t7.is_none() || lead.follow_ups.t3.is_some());
            assert_eq!(lead.status == LeadStatus::Expired, lead.owner.is_none());
            // A running grace window lies ahead; a stopped clock holds every window.
            let stopped = lead.protection.is_stopped();
            match lead.status {
                LeadStatus::Reminder => {
                    assert!(lead.protection.reminder_at.is_some());
                    assert!(stopped || lead.protection.grace_until.unwrap() > NOW);
                }
                LeadStatus::GracePeriod => {
                    assert!(lead.protection.grace_until.is_some());
                    assert!(stopped || lead.protected_until(&policy) <= NOW);
                    assert!(stopped || lead.protection.grace_until.unwrap() > NOW);
                }
                _ => {}
            }
            // (Reopening restarts protection: registeredAt may then lie after createdAt.)
            assert!(lead.created_at <= lead.updated_at && lead.updated_at <= NOW);
            assert!(lead.registered_at <= lead.updated_at);
            if lead.status != LeadStatus::Deleted {
                let keys = lead.data.duplicate_keys();
                assert!(
                    company.insert(keys.company),
                    "duplicate company {}",
                    lead.id
                );
                if let Some(e) = keys.email {
                    assert!(email.insert(e), "duplicate email {}", lead.id);
                }
            }
        }
        let ids: HashSet<Uuid> = data.leads.iter().map(|l| l.id).collect();
        assert_eq!(ids.len(), data.leads.len());
        let activity_ids: HashSet<Uuid> = data.activities.iter().map(|a| a.id).collect();
        assert_eq!(activity_ids.len(), data.activities.len());
        assert!(data.activities.iter().all(|a| ids.contains(&a.lead_id)));
        assert!(data.activities.iter().all(|a| a.occurred_at <= NOW));
        let created = data
            .activities
            .iter()
            .filter(|a| a.activity_type == ActivityType::Created)
            .count();
        assert_eq!(created, data.leads.len(), "one CREATED entry per lead");
    }

    #[test]
    fn timelines_and_followups_cover_every_kind() {
        let data = dataset();
        let types: BTreeSet<ActivityType> =
            data.activities.iter().map(|a| a.activity_type).collect();
        for t in [
            ActivityType::Email,
            ActivityType::EmailReceived,
            ActivityType::Call,
            ActivityType::Meeting,
            ActivityType::SampleSent,
            ActivityType::SampleFeedback,
            ActivityType::Order,
            ActivityType::Note,
            ActivityType::Created,
            ActivityType::Updated,
            ActivityType::StatusChanged,
            ActivityType::OwnerChanged,
            ActivityType::ClockStopped,
            ActivityType::ClockResumed,
            ActivityType::FollowupSent,
            ActivityType::FollowupSkipped,
            ActivityType::ReminderSent,
            ActivityType::GracePeriodStarted,
            ActivityType::Expired,
            ActivityType::Reactivated,
            ActivityType::Deleted,
            ActivityType::Unsubscribed,
        ] {
            assert!(types.contains(&t), "no {t:?} activity");
        }
        assert!(data.activities.len() >= 5 * data.leads.len());
        for stage in Stage::ALL {
            let of = |status: FollowUpStatus, reason: Option<SkipReason>| {
                data.followups
                    .iter()
                    .filter(|f| {
                        f.record.stage == stage
                            && f.record.status == status
                            && f.record.reason == reason
                    })
                    .count()
            };
            assert!(of(FollowUpStatus::Sent, None) >= 20, "{stage} sent");
            for reason in SkipReason::ALL {
                assert!(
                    of(FollowUpStatus::Skipped, Some(reason)) >= 3,
                    "{stage} {reason}"
                );
            }
        }
        let open = |l: &&Lead| l.status.is_open() && !l.protection.is_stopped();
        let pending_t3 = data
            .leads
            .iter()
            .filter(open)
            .filter(|l| l.follow_ups.t3.is_none())
            .count();
        let pending_t7 = data
            .leads
            .iter()
            .filter(open)
            .filter(|l| l.follow_ups.t3.is_some() && l.follow_ups.t7.is_none())
            .count();
        assert!(pending_t3 >= 10, "pending T+3: {pending_t3}");
        assert!(pending_t7 >= 5, "pending T+7: {pending_t7}");
    }

    /// Loads the demo data into a fresh database (DATABASE_URL, else 127.0.0.1:5432) and reads
    /// it back through the production adapter and its row-level security.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn seeds_a_fresh_database_and_reads_back_the_same_leads() {
        let admin_url = std::env::var("DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let url = freshplan_store_postgres::testing::fresh_database(&admin_url)
            .await
            .expect("a fresh database");
        freshplan_store_postgres::migrate(&url)
            .await
            .expect("migrate");
        let pool = freshplan_store_postgres::connect(&url, 4)
            .await
            .expect("connect");

        let started = std::time::Instant::now();
        let seeded = seed_if_empty(&pool, NOW)
            .await
            .expect("seed")
            .expect("an empty database is seeded");
        let elapsed = started.elapsed();
        let data = dataset();
        assert_eq!(seeded.leads, data.leads.len() as i64);
        assert_eq!(seeded.activities, data.activities.len() as i64);
        assert_eq!(seeded.followups, data.followups.len() as i64);
        assert!(
            elapsed < std::time::Duration::from_secs(30),
            "seeding took {elapsed:?}"
        );
        assert_eq!(
            seed_if_empty(&pool, NOW).await.expect("second seed"),
            None,
            "a seeded database is left alone"
        );

        let store = PgLeadStore::new(pool.clone());
        let mut tx = store.begin(&Actor::system()).await.expect("begin");
        let page = tx
            .list(&LeadQuery {
                size: 10_000,
                include_deleted: true,
                ..LeadQuery::default()
            })
            .await
            .expect("list");
        assert!(
            tx.due_for_sweep(NOW, 10).await.expect("sweep").is_empty(),
            "nothing is due for the sweep right after seeding"
        );
        tx.commit().await.expect("commit");
        let read: BTreeMap<Uuid, Lead> = page.items.into_iter().map(|l| (l.id, l)).collect();
        assert_eq!(read.len(), data.leads.len());

        // The cockpit (its count read models follow the leads' follow-up progress, which the
        // loader writes from the records) shows the domain's figures of the seeded rows, and a
        // follow-up run right after seeding finds nothing to do.
        let record = |lead: Uuid, stage: Stage| {
            data.followups
                .iter()
                .find(|f| f.lead_id == lead && f.record.stage == stage)
                .map(|f| f.record)
        };
        let rows: Vec<freshplan_followup::cockpit::CockpitRow> = data
            .leads
            .iter()
            .map(|l| freshplan_followup::cockpit::CockpitRow {
                territory: l.territory,
                owner: l.owner.clone(),
                status: l.status,
                clock_stopped: l.protection.clock_stopped_at.is_some(),
                t3: record(l.id, Stage::T3),
                t7: record(l.id, Stage::T7),
            })
            .collect();
        let admin = Actor::new(user("admin"), [Role::Admin], []);
        let scope = freshplan_followup::Scope::for_actor(&admin, None);
        use freshplan_followup::port::{FollowUpStore as _, FollowUpTx as _};
        let followups = freshplan_store_postgres::PgFollowUpStore::new(pool.clone());
        assert_eq!(
            followups
                .figures(&admin, &scope, NOW)
                .await
                .expect("figures"),
            freshplan_followup::figures(&rows, &scope, NOW),
            "cockpit figures of the seeded data"
        );
        let mut claim = followups.begin().await.expect("begin");
        let due = claim.claim_due(NOW, None, 10_000).await.expect("claim");
        assert!(
            due.iter()
                .all(|c| !matches!(freshplan_followup::plan::plan(c, NOW), Plan::Process { .. })),
            "nothing to follow up right after seeding"
        );
        assert!(
            due.iter().all(|c| c.next_stage().is_some()),
            "the claim offers only leads with a stage left"
        );
        drop(claim);
        for lead in &data.leads {
            assert_eq!(read.get(&lead.id), Some(lead), "lead {}", lead.id);
        }

        // Row-level security: each persona sees its data room, reps their own leads only.
        for persona in PERSONAS {
            let roles: Vec<Role> = persona.roles.split(',').filter_map(Role::parse).collect();
            let territories: Vec<TerritoryId> = persona
                .territories
                .split(',')
                .filter_map(|t| t.parse().ok())
                .collect();
            let actor = Actor::new(user(persona.sub), roles, territories);
            let expected = data
                .leads
                .iter()
                .filter(|l| l.status != LeadStatus::Deleted)
                .filter(|l| {
                    access::can_read(
                        &actor,
                        &LeadFacts {
                            territory: l.territory,
                            owner: l.owner.as_ref(),
                            collaborators: &l.collaborators,
                        },
                    )
                })
                .count();
            let mut tx = store.begin(&actor).await.expect("begin");
            let visible = tx
                .list(&LeadQuery {
                    size: 1,
                    ..LeadQuery::default()
                })
                .await
                .expect("list")
                .total;
            tx.commit().await.expect("commit");
            assert_eq!(visible, expected as u64, "{}", persona.label);
            assert!(visible > 0, "{} sees nothing", persona.label);
        }
        pool.close().await;

        // Passed: drop the database (a failing run leaves it for inspection).
        let name = url.rsplit('/').next().unwrap().split('?').next().unwrap();
        let mut conn = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("connect");
        sqlx::query(&format!("drop database {name} with (force)"))
            .execute(&mut conn)
            .await
            .expect("drop the test database");
    }
}
