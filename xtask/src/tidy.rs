//! `cargo xtask tidy`: the workspace's architecture invariants, checked mechanically.
//!
//! The invariants are stated as absences (STYLE.md, after rust-analyzer's `architecture.md`):
//!
//! 1. every member inherits the workspace lints (`[lints] workspace = true`);
//! 2. every member declares every dependency with `workspace = true`, so each dependency is
//!    declared once, in the root `[workspace.dependencies]`;
//! 3. the domain crates (kernel, territory, leads, followup) know nothing about SQL, HTTP,
//!    Prometheus or a runtime: their direct normal dependencies come from an allow-list of pure
//!    crates, and their transitive normal closure holds none of the deny-listed crates.
//!
//! The check runs on a small model of its own ([`Model`]) extracted from `cargo metadata` and the
//! members' manifests, so tests can inject a violation without touching a real manifest.
//! `cargo deny check bans` enforces the same rule from the other side (`deny.toml` wrappers).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::path::Path;

use anyhow::{Context, Result};
use cargo_metadata::{CargoOpt, DependencyKind, Metadata, MetadataCommand};

/// The domain crates: pure, no I/O, no runtime.
pub(crate) const DOMAIN_CRATES: &[&str] = &[
    "freshplan-kernel",
    "freshplan-territory",
    "freshplan-leads",
    "freshplan-followup",
];

/// Crates a domain crate may name as a direct normal dependency (besides the domain crates).
const DOMAIN_ALLOWED: &[&str] = &[
    "serde",
    "serde_json",
    "uuid",
    "time",
    "time-tz",
    "thiserror",
    "hmac",
    "sha2",
    "base64",
    "subtle",
    // runtime-agnostic future combinators (`join_all` for a run's concurrent batches): no
    // executor, no I/O; tokio and the other runtimes stay on the transitive deny-list
    "futures-util",
];

/// Crates a domain crate may name only as an optional dependency behind a feature
/// (`testing` → proptest strategies, `mocks` → mockall mocks), never unconditionally.
const DOMAIN_ALLOWED_OPTIONAL: &[&str] = &["proptest", "mockall"];

/// Crates that must not appear anywhere in a domain crate's transitive normal dependencies.
/// A trailing `*` matches any name with that prefix.
const DOMAIN_DENIED_TRANSITIVE: &[&str] = &[
    "sqlx*",
    "actix*",
    "prometheus*",
    "tokio*",
    "hyper*",
    "reqwest",
    "mio",
    "async-std",
    "postgres*",
    "lettre",
];

/// The kind of a dependency edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    Normal,
    Dev,
    Build,
}

/// One package of the resolved dependency graph.
#[derive(Debug, Clone)]
pub(crate) struct Package {
    pub(crate) name: String,
    pub(crate) version: String,
    /// Resolved dependencies: package id → the kinds under which it is depended on.
    pub(crate) deps: BTreeMap<String, BTreeSet<Kind>>,
}

/// What tidy needs to know about one workspace member.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) id: String,
    pub(crate) name: String,
    /// For messages only.
    pub(crate) manifest_path: String,
    pub(crate) manifest: ManifestFacts,
    /// Package names of the normal dependencies declared `optional = true`.
    pub(crate) optional_deps: BTreeSet<String>,
}

/// Facts read from a member's `Cargo.toml` text (inheritance is invisible in `cargo metadata`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ManifestFacts {
    /// `[lints] workspace = true`.
    pub(crate) lints_inherited: bool,
    /// Dependencies declared without `workspace = true`, as (table, key).
    pub(crate) not_inherited: Vec<(String, String)>,
}

/// The input of [`check`]: workspace members plus the resolved graph (all features enabled).
#[derive(Debug, Clone)]
pub(crate) struct Model {
    pub(crate) members: Vec<Member>,
    /// Every package of the resolve, by package id.
    pub(crate) packages: BTreeMap<String, Package>,
}

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Violation {
    LintsNotInherited {
        krate: String,
        manifest: String,
    },
    DependencyNotInherited {
        krate: String,
        table: String,
        dependency: String,
    },
    DomainDependencyNotAllowed {
        krate: String,
        dependency: String,
    },
    DomainDependencyNotOptional {
        krate: String,
        dependency: String,
    },
    DomainTransitiveDenied {
        krate: String,
        dependency: String,
        /// `krate → … → dependency`, with versions.
        path: Vec<String>,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::LintsNotInherited { krate, manifest } => write!(
                f,
                "{krate}: manifest lacks `[lints] workspace = true` ({manifest})"
            ),
            Violation::DependencyNotInherited {
                krate,
                table,
                dependency,
            } => write!(
                f,
                "{krate}: `{dependency}` in [{table}] is not declared with `workspace = true` \
                 (declare it once in the root [workspace.dependencies])"
            ),
            Violation::DomainDependencyNotAllowed { krate, dependency } => write!(
                f,
                "{krate}: domain crate depends on `{dependency}`, which is not on the allow-list \
                 of pure crates (xtask/src/tidy.rs DOMAIN_ALLOWED)"
            ),
            Violation::DomainDependencyNotOptional { krate, dependency } => write!(
                f,
                "{krate}: domain crate may depend on `{dependency}` only as an optional \
                 dependency behind a feature (`testing`/`mocks`)"
            ),
            Violation::DomainTransitiveDenied {
                krate,
                dependency,
                path,
            } => write!(
                f,
                "{krate}: domain crate pulls in `{dependency}` through normal dependencies: {}",
                path.join(" → ")
            ),
        }
    }
}

/// Runs `cargo metadata` (all features) for the workspace at `workspace_root` and builds the model.
pub(crate) fn load(workspace_root: &Path) -> Result<Model> {
    let metadata = MetadataCommand::new()
        .manifest_path(workspace_root.join("Cargo.toml"))
        .features(CargoOpt::AllFeatures)
        .exec()
        .context("running `cargo metadata`")?;
    Model::from_metadata(&metadata)
}

impl Model {
    /// Extracts the model from `cargo metadata` output, reading each member's manifest from disk.
    pub(crate) fn from_metadata(metadata: &Metadata) -> Result<Model> {
        let resolve = metadata
            .resolve
            .as_ref()
            .context("`cargo metadata` returned no resolve graph")?;
        let by_id: BTreeMap<&str, &cargo_metadata::Package> = metadata
            .packages
            .iter()
            .map(|p| (p.id.repr.as_str(), p))
            .collect();

        let mut packages = BTreeMap::new();
        for node in &resolve.nodes {
            let package = by_id
                .get(node.id.repr.as_str())
                .with_context(|| format!("package {} missing from metadata", node.id))?;
            let mut deps: BTreeMap<String, BTreeSet<Kind>> = BTreeMap::new();
            for dep in &node.deps {
                let kinds = deps.entry(dep.pkg.repr.clone()).or_default();
                for info in &dep.dep_kinds {
                    kinds.insert(match info.kind {
                        DependencyKind::Development => Kind::Dev,
                        DependencyKind::Build => Kind::Build,
                        // Unknown kinds are treated as normal: the conservative choice.
                        _ => Kind::Normal,
                    });
                }
            }
            packages.insert(
                node.id.repr.clone(),
                Package {
                    name: package.name.to_string(),
                    version: package.version.to_string(),
                    deps,
                },
            );
        }

        let mut members = Vec::new();
        for id in &metadata.workspace_members {
            let package = by_id
                .get(id.repr.as_str())
                .with_context(|| format!("workspace member {id} missing from metadata"))?;
            let text = std::fs::read_to_string(&package.manifest_path)
                .with_context(|| format!("reading {}", package.manifest_path))?;
            let manifest = ManifestFacts::parse(&text)
                .with_context(|| format!("parsing {}", package.manifest_path))?;
            let optional_deps = package
                .dependencies
                .iter()
                .filter(|d| d.kind == DependencyKind::Normal && d.optional)
                .map(|d| d.name.clone())
                .collect();
            members.push(Member {
                id: id.repr.clone(),
                name: package.name.to_string(),
                manifest_path: package.manifest_path.to_string(),
                manifest,
                optional_deps,
            });
        }
        members.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Model { members, packages })
    }
}

impl ManifestFacts {
    /// Reads the inheritance facts from a member manifest's text.
    pub(crate) fn parse(text: &str) -> Result<ManifestFacts> {
        let doc: toml::Table = toml::from_str(text)?;
        let lints_inherited = doc
            .get("lints")
            .and_then(|l| l.get("workspace"))
            .and_then(toml::Value::as_bool)
            .unwrap_or(false);

        let mut not_inherited = Vec::new();
        let mut scan = |prefix: &str, table: &toml::Table| {
            for section in DEPENDENCY_TABLES {
                let Some(deps) = table.get(*section).and_then(toml::Value::as_table) else {
                    continue;
                };
                for (key, spec) in deps {
                    let inherited = spec
                        .get("workspace")
                        .and_then(toml::Value::as_bool)
                        .unwrap_or(false);
                    if !inherited {
                        not_inherited.push((format!("{prefix}{section}"), key.clone()));
                    }
                }
            }
        };
        scan("", &doc);
        if let Some(targets) = doc.get("target").and_then(toml::Value::as_table) {
            for (cfg, table) in targets {
                if let Some(table) = table.as_table() {
                    scan(&format!("target.'{cfg}'."), table);
                }
            }
        }
        Ok(ManifestFacts {
            lints_inherited,
            not_inherited,
        })
    }
}

/// Dependency tables of a manifest, including the legacy underscore spellings.
const DEPENDENCY_TABLES: &[&str] = &[
    "dependencies",
    "dev-dependencies",
    "dev_dependencies",
    "build-dependencies",
    "build_dependencies",
];

/// Checks every invariant and returns all violations (empty when the workspace is tidy).
pub(crate) fn check(model: &Model) -> Vec<Violation> {
    let mut violations = Vec::new();
    for member in &model.members {
        if !member.manifest.lints_inherited {
            violations.push(Violation::LintsNotInherited {
                krate: member.name.clone(),
                manifest: member.manifest_path.clone(),
            });
        }
        for (table, dependency) in &member.manifest.not_inherited {
            violations.push(Violation::DependencyNotInherited {
                krate: member.name.clone(),
                table: table.clone(),
                dependency: dependency.clone(),
            });
        }
        if DOMAIN_CRATES.contains(&member.name.as_str()) {
            check_domain(model, member, &mut violations);
        }
    }
    violations
}

fn check_domain(model: &Model, member: &Member, violations: &mut Vec<Violation>) {
    let Some(package) = model.packages.get(&member.id) else {
        return;
    };
    for (dep_id, kinds) in &package.deps {
        if !kinds.contains(&Kind::Normal) {
            continue;
        }
        let Some(dep) = model.packages.get(dep_id) else {
            continue;
        };
        let name = dep.name.as_str();
        if DOMAIN_CRATES.contains(&name) || DOMAIN_ALLOWED.contains(&name) {
            continue;
        }
        if DOMAIN_ALLOWED_OPTIONAL.contains(&name) {
            if !member.optional_deps.contains(name) {
                violations.push(Violation::DomainDependencyNotOptional {
                    krate: member.name.clone(),
                    dependency: name.to_owned(),
                });
            }
            continue;
        }
        violations.push(Violation::DomainDependencyNotAllowed {
            krate: member.name.clone(),
            dependency: name.to_owned(),
        });
    }

    // Breadth-first over normal edges, remembering how each package was reached so the report
    // can show the chain that pulls a denied crate in.
    let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::from([member.id.as_str()]);
    let mut seen = BTreeSet::from([member.id.as_str()]);
    while let Some(id) = queue.pop_front() {
        let Some(package) = model.packages.get(id) else {
            continue;
        };
        if id != member.id && is_denied(&package.name) {
            let mut path = vec![label(model, id)];
            let mut cursor = id;
            while let Some(&up) = parent.get(cursor) {
                path.push(label(model, up));
                cursor = up;
            }
            path.reverse();
            violations.push(Violation::DomainTransitiveDenied {
                krate: member.name.clone(),
                dependency: package.name.clone(),
                path,
            });
        }
        for (dep_id, kinds) in &package.deps {
            if kinds.contains(&Kind::Normal) && seen.insert(dep_id.as_str()) {
                parent.insert(dep_id.as_str(), id);
                queue.push_back(dep_id.as_str());
            }
        }
    }
}

fn label(model: &Model, id: &str) -> String {
    model
        .packages
        .get(id)
        .map_or_else(|| id.to_owned(), |p| format!("{} {}", p.name, p.version))
}

fn is_denied(name: &str) -> bool {
    DOMAIN_DENIED_TRANSITIVE
        .iter()
        .any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == *pattern,
        })
}

/// `cargo xtask tidy`.
pub(crate) fn run(workspace_root: &Path) -> Result<()> {
    let model = load(workspace_root)?;
    let violations = check(&model);
    if violations.is_empty() {
        println!(
            "tidy: {} workspace members checked, no violations",
            model.members.len()
        );
        return Ok(());
    }
    for violation in &violations {
        eprintln!("tidy: {violation}");
    }
    anyhow::bail!("tidy found {} violation(s)", violations.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace_model() -> Model {
        load(&crate::workspace_root()).expect("cargo metadata of the workspace")
    }

    fn add_package(model: &mut Model, name: &str) -> String {
        let id = format!("fake+tidy-test#{name}@1.0.0");
        model.packages.insert(
            id.clone(),
            Package {
                name: name.to_owned(),
                version: "1.0.0".to_owned(),
                deps: BTreeMap::new(),
            },
        );
        id
    }

    fn add_edge(model: &mut Model, from: &str, to: &str, kind: Kind) {
        model
            .packages
            .get_mut(from)
            .expect("edge source exists")
            .deps
            .entry(to.to_owned())
            .or_default()
            .insert(kind);
    }

    fn member_id(model: &Model, name: &str) -> String {
        model
            .members
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("{name} is a workspace member"))
            .id
            .clone()
    }

    /// The architecture invariants hold for the real workspace.
    #[test]
    fn tidy() {
        let model = workspace_model();
        assert!(
            model.members.iter().any(|m| m.name == "freshplan-kernel"),
            "the model sees the workspace members"
        );
        let violations = check(&model);
        let report: Vec<String> = violations.iter().map(ToString::to_string).collect();
        assert!(
            violations.is_empty(),
            "tidy violations:\n{}",
            report.join("\n")
        );
    }

    #[test]
    fn reports_a_direct_runtime_dependency_of_a_domain_crate() {
        let mut model = workspace_model();
        let leads = member_id(&model, "freshplan-leads");
        let tokio = add_package(&mut model, "tokio");
        add_edge(&mut model, &leads, &tokio, Kind::Normal);

        let violations = check(&model);
        assert!(violations.contains(&Violation::DomainDependencyNotAllowed {
            krate: "freshplan-leads".into(),
            dependency: "tokio".into(),
        }));
        assert!(violations.iter().any(|v| matches!(
            v,
            Violation::DomainTransitiveDenied { krate, dependency, path }
                if krate == "freshplan-leads" && dependency == "tokio" && path.len() == 2
        )));
    }

    #[test]
    fn reports_a_transitive_runtime_dependency_with_its_path() {
        let mut model = workspace_model();
        let leads = member_id(&model, "freshplan-leads");
        let pure = add_package(&mut model, "innocent-looking");
        let mio = add_package(&mut model, "mio");
        add_edge(&mut model, &leads, &pure, Kind::Normal);
        add_edge(&mut model, &pure, &mio, Kind::Normal);

        let violations = check(&model);
        let transitive = violations
            .iter()
            .find_map(|v| match v {
                Violation::DomainTransitiveDenied {
                    krate,
                    dependency,
                    path,
                } if krate == "freshplan-leads" && dependency == "mio" => Some(path.clone()),
                _ => None,
            })
            .expect("mio is reported");
        assert_eq!(
            transitive,
            [
                "freshplan-leads 0.1.0",
                "innocent-looking 1.0.0",
                "mio 1.0.0"
            ]
        );
        // The crate that is not on the allow-list is reported as well.
        assert!(violations.contains(&Violation::DomainDependencyNotAllowed {
            krate: "freshplan-leads".into(),
            dependency: "innocent-looking".into(),
        }));
    }

    #[test]
    fn dev_and_build_dependencies_of_domain_crates_are_not_restricted() {
        let mut model = workspace_model();
        let leads = member_id(&model, "freshplan-leads");
        let tokio = add_package(&mut model, "tokio");
        add_edge(&mut model, &leads, &tokio, Kind::Dev);
        let sqlx = add_package(&mut model, "sqlx");
        add_edge(&mut model, &leads, &sqlx, Kind::Build);
        assert_eq!(check(&model), check(&workspace_model()));
    }

    #[test]
    fn proptest_must_be_optional_in_a_domain_crate() {
        let mut model = workspace_model();
        let leads = member_id(&model, "freshplan-leads");
        let proptest = add_package(&mut model, "proptest");
        add_edge(&mut model, &leads, &proptest, Kind::Normal);
        for member in &mut model.members {
            member.optional_deps.remove("proptest");
        }
        assert!(
            check(&model).contains(&Violation::DomainDependencyNotOptional {
                krate: "freshplan-leads".into(),
                dependency: "proptest".into(),
            })
        );
    }

    #[test]
    fn adapters_may_depend_on_anything() {
        let mut model = workspace_model();
        let xtask = member_id(&model, "xtask");
        let tokio = add_package(&mut model, "tokio");
        add_edge(&mut model, &xtask, &tokio, Kind::Normal);
        assert_eq!(check(&model), check(&workspace_model()));
    }

    #[test]
    fn manifest_inheritance_is_read_from_the_text() {
        let facts = ManifestFacts::parse(
            r#"
            [package]
            name = "freshplan-example"

            [dependencies]
            serde.workspace = true
            tokio = "1"
            uuid = { workspace = true, features = ["v4"] }
            time = { version = "0.3", workspace = false }

            [dev-dependencies]
            proptest = { version = "1" }

            [target.'cfg(unix)'.build-dependencies]
            cc = "1"
            "#,
        )
        .expect("valid TOML");
        assert!(!facts.lints_inherited);
        assert_eq!(
            facts.not_inherited,
            [
                ("dependencies".to_owned(), "time".to_owned()),
                ("dependencies".to_owned(), "tokio".to_owned()),
                ("dev-dependencies".to_owned(), "proptest".to_owned()),
                (
                    "target.'cfg(unix)'.build-dependencies".to_owned(),
                    "cc".to_owned()
                ),
            ]
        );

        let tidy = ManifestFacts::parse(
            "[lints]\nworkspace = true\n[dependencies]\nserde.workspace = true\n",
        )
        .expect("valid TOML");
        assert_eq!(
            tidy,
            ManifestFacts {
                lints_inherited: true,
                not_inherited: Vec::new()
            }
        );
    }

    #[test]
    fn manifest_facts_become_violations() {
        let mut model = workspace_model();
        let member = model
            .members
            .iter_mut()
            .find(|m| m.name == "freshplan-territory")
            .expect("territory is a member");
        member.manifest = ManifestFacts::parse("[dependencies]\ntokio = \"1\"\n").expect("valid");
        let violations = check(&model);
        assert!(violations.iter().any(|v| matches!(
            v,
            Violation::LintsNotInherited { krate, .. } if krate == "freshplan-territory"
        )));
        assert!(violations.contains(&Violation::DependencyNotInherited {
            krate: "freshplan-territory".into(),
            table: "dependencies".into(),
            dependency: "tokio".into(),
        }));
    }

    #[test]
    fn deny_patterns() {
        for name in [
            "sqlx",
            "sqlx-postgres",
            "tokio",
            "tokio-util",
            "actix-web",
            "hyper-util",
            "mio",
            "postgres-types",
            "prometheus",
            "lettre",
            "reqwest",
            "async-std",
        ] {
            assert!(is_denied(name), "{name} is denied");
        }
        for name in ["serde", "time", "uuid", "miow", "proptest", "thiserror"] {
            assert!(!is_denied(name), "{name} is allowed");
        }
    }
}
