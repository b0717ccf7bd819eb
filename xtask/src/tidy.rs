//! `cargo xtask tidy`: the workspace's architecture invariants, checked mechanically.
//!
//! The invariants are stated as absences (STYLE.md, after rust-analyzer's `architecture.md`):
//!
//! 1. every member inherits the workspace lints (`[lints] workspace = true`);
//! 2. every member declares every dependency with `workspace = true`, so each dependency is
//!    declared once, in the root `[workspace.dependencies]`;
//! 3. the domain crates (kernel, territory, leads, followup) know nothing about SQL, HTTP,
//!    Prometheus or a runtime: their direct normal dependencies come from an allow-list of pure
//!    crates, and their transitive normal closure holds none of the deny-listed crates;
//! 4. the app's HTTP resource modules (`crates/app/src/api/*`) don't import each other: a module
//!    there names nothing of `crate::api` but itself and the shared [`API_SHARED`] modules, which
//!    name no resource module (a source scan of the `crate::…` and `super::…` paths in code,
//!    comments and literals ignored); and the app's other modules — the wiring the handlers
//!    call — don't name `crate::api` at all, but for [`API_USERS`] (the crate root and the route
//!    table, which register the routes, and the OpenAPI document, which lists them).
//!
//! The check runs on a small model of its own ([`Model`]) extracted from `cargo metadata`, the
//! members' manifests and the API modules' sources, so tests can inject a violation without
//! touching a real manifest or source file.
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

/// The app's HTTP layer, relative to the workspace root: one module per resource (STYLE.md, "The
/// HTTP contract"), `mod.rs` declaring them.
pub(crate) const API_DIR: &str = "crates/app/src/api";

/// Modules of [`API_DIR`] that every resource module may import (they import no resource module).
pub(crate) const API_SHARED: &[&str] = &["common"];

/// The files of `crates/app/src` outside [`API_DIR`] that may name `crate::api`.
pub(crate) const API_USERS: &[&str] = &["lib.rs", "openapi.rs", "routes.rs"];

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

/// One source file of a module under [`API_DIR`].
#[derive(Debug, Clone)]
pub(crate) struct ApiSource {
    /// The module directly under `crate::api` the file belongs to (`followups` for
    /// `api/followups.rs`, `api/leads/mod.rs` and `api/leads/query.rs`).
    pub(crate) module: String,
    /// For messages only.
    pub(crate) path: String,
    /// How many `super::` lead from the file's module to `crate::api` (1 for `api/x.rs` and
    /// `api/x/mod.rs`, 2 for `api/x/y.rs`).
    pub(crate) depth: usize,
    pub(crate) text: String,
}

/// The input of [`check`]: workspace members plus the resolved graph (all features enabled),
/// and the sources of the app's HTTP resource modules.
#[derive(Debug, Clone)]
pub(crate) struct Model {
    pub(crate) members: Vec<Member>,
    /// Every package of the resolve, by package id.
    pub(crate) packages: BTreeMap<String, Package>,
    /// The files under [`API_DIR`] but its `mod.rs`.
    pub(crate) api_sources: Vec<ApiSource>,
    /// The other files directly in `crates/app/src` but [`API_USERS`].
    pub(crate) wiring_sources: Vec<WiringSource>,
}

/// One file directly in `crates/app/src`: a module of the crate root.
#[derive(Debug, Clone)]
pub(crate) struct WiringSource {
    /// For messages only.
    pub(crate) path: String,
    pub(crate) text: String,
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
    ApiModuleImportsAnother {
        /// The importing module under `crate::api`.
        module: String,
        file: String,
        line: usize,
        /// What it names below `crate::api` (`api` itself for `crate::api`, `*` for a glob).
        other: String,
    },
    WiringImportsApi {
        file: String,
        line: usize,
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
            Violation::ApiModuleImportsAnother {
                module,
                file,
                line,
                other,
            } => write!(
                f,
                "{file}:{line}: the HTTP resource module `crate::api::{module}` names \
                 `crate::api::{other}`; resource modules don't import each other (put what they \
                 share into one of {API_SHARED:?}, which import no resource module)"
            ),
            Violation::WiringImportsApi { file, line } => write!(
                f,
                "{file}:{line}: names `crate::api`; the app's wiring does not import the HTTP \
                 layer (only {API_USERS:?} register or list its routes)"
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
    let mut model = Model::from_metadata(&metadata)?;
    model.api_sources = read_api_sources(workspace_root)?;
    model.wiring_sources = read_wiring_sources(workspace_root)?;
    Ok(model)
}

/// Reads the `.rs` files of `crates/app/src` (not below it) but [`API_USERS`].
pub(crate) fn read_wiring_sources(workspace_root: &Path) -> Result<Vec<WiringSource>> {
    let dir = workspace_root.join("crates/app/src");
    let mut out = Vec::new();
    let mut entries = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<std::io::Result<Vec<_>>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !path.is_file() || !name.ends_with(".rs") || API_USERS.contains(&name.as_str()) {
            continue;
        }
        out.push(WiringSource {
            path: path.display().to_string(),
            text: std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?,
        });
    }
    Ok(out)
}

/// Reads every `.rs` file under [`API_DIR`] but its `mod.rs` (none when the directory is absent).
pub(crate) fn read_api_sources(workspace_root: &Path) -> Result<Vec<ApiSource>> {
    fn walk(dir: &Path, below: &[String], out: &mut Vec<ApiSource>) -> Result<()> {
        let mut entries = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .collect::<std::io::Result<Vec<_>>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let mut components = below.to_vec();
            components.push(name.clone());
            if path.is_dir() {
                walk(&path, &components, out)?;
                continue;
            }
            let Some(stem) = name.strip_suffix(".rs") else {
                continue;
            };
            if components.len() == 1 && stem == "mod" {
                continue;
            }
            let module = if components.len() == 1 {
                stem.to_owned()
            } else {
                components[0].clone()
            };
            out.push(ApiSource {
                module,
                path: path.display().to_string(),
                depth: components.len() - usize::from(stem == "mod"),
                text: std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?,
            });
        }
        Ok(())
    }
    let dir = workspace_root.join(API_DIR);
    let mut out = Vec::new();
    if dir.is_dir() {
        walk(&dir, &[], &mut out)?;
    }
    Ok(out)
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
        Ok(Model {
            members,
            packages,
            api_sources: Vec::new(),
            wiring_sources: Vec::new(),
        })
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
    for source in &model.api_sources {
        check_api_source(source, &mut violations);
    }
    for source in &model.wiring_sources {
        for (line, _) in api_paths(&source.text, None) {
            violations.push(Violation::WiringImportsApi {
                file: source.path.clone(),
                line,
            });
        }
    }
    violations
}

/// Reports every path in `source` that leads into `crate::api` and names something but the
/// file's own module and the shared ones.
fn check_api_source(source: &ApiSource, violations: &mut Vec<Violation>) {
    for (line, path) in api_paths(&source.text, Some(source.depth)) {
        let other = match path.first().map(String::as_str) {
            None => "api",
            Some(first) => first,
        };
        if other == source.module || API_SHARED.contains(&other) {
            continue;
        }
        violations.push(Violation::ApiModuleImportsAnother {
            module: source.module.clone(),
            file: source.path.clone(),
            line,
            other: other.to_owned(),
        });
    }
}

/// Every path of `text` (comments and literals blanked) that leads into `crate::api`, as its segments below
/// `crate::api` with the line it starts on: `crate::api::x::y`, `crate::{api::x, …}`, use groups
/// expanded, and `super::…` from a file `below_api` modules below `crate::api` (`None`: a module
/// of the crate root).
fn api_paths(text: &str, below_api: Option<usize>) -> Vec<(usize, Vec<String>)> {
    let chars = code_only(text);
    let line_at = |i: usize| 1 + chars[..i].iter().filter(|c| **c == '\n').count();
    let mut out = Vec::new();
    // The open braces; `true` for the body of an inline `mod name { … }`, in which `super` is
    // one module further from `crate::api`.
    let mut braces: Vec<bool> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let at_word = i == 0 || !is_ident(chars[i - 1]);
        let start = i;
        match chars[i] {
            '{' => braces.push(inline_mod_before(&chars, i)),
            '}' => {
                braces.pop();
            }
            _ => {}
        }
        let inline = braces.iter().filter(|m| **m).count();
        let to_api = below_api.map(|d| d + inline);
        let to_root = below_api.map_or(1, |d| d + 1) + inline;
        // The segments that lead to the crate root (`crate::`, or `super::` × `to_root`) or to
        // `crate::api` (`super::` × `to_api`).
        let prefix: Option<Vec<String>> = if at_word && starts_with(&chars, i, "crate::") {
            i += "crate::".len();
            Some(Vec::new())
        } else if at_word && starts_with(&chars, i, "super::") {
            let mut hops = 0;
            while starts_with(&chars, i, "super::") {
                hops += 1;
                i += "super::".len();
            }
            if Some(hops) == to_api {
                Some(vec!["api".to_owned()])
            } else if hops == to_root {
                Some(Vec::new())
            } else {
                None
            }
        } else {
            i += 1;
            None
        };
        let Some(prefix) = prefix else { continue };
        let (paths, end) = use_tree(&chars, i);
        i = end.max(i);
        for path in paths {
            let full: Vec<String> = prefix.iter().cloned().chain(path).collect();
            if full.first().map(String::as_str) == Some("api") {
                out.push((line_at(start), full[1..].to_vec()));
            }
        }
    }
    out
}

/// The paths of the use tree (or plain path) starting at `i`: `a::b`, `a::{b, c::d}`, `a::*`.
/// Returns them and the position after the tree.
fn use_tree(chars: &[char], mut i: usize) -> (Vec<Vec<String>>, usize) {
    let skip_ws = |mut i: usize| {
        while chars.get(i).is_some_and(|c| c.is_whitespace()) {
            i += 1;
        }
        i
    };
    let mut segments = Vec::new();
    loop {
        i = skip_ws(i);
        match chars.get(i) {
            Some('{') => {
                let mut paths = Vec::new();
                i += 1;
                loop {
                    i = skip_ws(i);
                    match chars.get(i) {
                        None => return (paths, i),
                        Some('}') => return (paths, i + 1),
                        Some(',') => i += 1,
                        _ => {
                            let (inner, end) = use_tree(chars, i);
                            for path in inner {
                                paths.push(segments.iter().cloned().chain(path).collect());
                            }
                            // Skip `as alias` and anything else up to the next entry.
                            i = end;
                            while chars.get(i).is_some_and(|c| *c != ',' && *c != '}') {
                                i += 1;
                            }
                        }
                    }
                }
            }
            Some('*') => {
                segments.push("*".to_owned());
                return (vec![segments], i + 1);
            }
            _ => {}
        }
        let from = i;
        while chars.get(i).copied().is_some_and(is_ident) {
            i += 1;
        }
        if i == from {
            return (vec![segments], i);
        }
        segments.push(chars[from..i].iter().collect());
        let after = skip_ws(i);
        if starts_with(chars, after, "::") {
            i = after + 2;
        } else {
            return (vec![segments], i);
        }
    }
}

/// Whether the `{` at `open` begins the body of an inline module (`mod name {`).
fn inline_mod_before(chars: &[char], open: usize) -> bool {
    let mut i = open;
    while i > 0 && chars[i - 1].is_whitespace() {
        i -= 1;
    }
    let name_end = i;
    while i > 0 && is_ident(chars[i - 1]) {
        i -= 1;
    }
    if i == name_end {
        return false;
    }
    let mut j = i;
    while j > 0 && chars[j - 1].is_whitespace() {
        j -= 1;
    }
    j >= 3 && chars[j - 3..j] == ['m', 'o', 'd'] && (j == 3 || !is_ident(chars[j - 4]))
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn starts_with(chars: &[char], i: usize, s: &str) -> bool {
    (i..).zip(s.chars()).all(|(j, c)| chars.get(j) == Some(&c))
}

/// `text` with its comments (doc comments included) and the contents of its string and char
/// literals blanked out, lines kept: what is left is code.
fn code_only(text: &str) -> Vec<char> {
    let chars: Vec<char> = text.chars().collect();
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut out = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let rest = &chars[i..];
        if rest.starts_with(&['/', '/']) {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if rest.starts_with(&['/', '*']) {
            // Block comments nest.
            let mut open = 0;
            while i < chars.len() {
                if chars[i..].starts_with(&['/', '*']) {
                    open += 1;
                    out.extend([' ', ' ']);
                    i += 2;
                } else if chars[i..].starts_with(&['*', '/']) {
                    open -= 1;
                    out.extend([' ', ' ']);
                    i += 2;
                    if open == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if rest[0] == '"' || (rest[0] == 'r' && matches!(rest.get(1), Some('"' | '#'))) {
            // A string, or a raw string `r#"…"#` (of a byte string the `b` stays, harmlessly).
            let at_word = i == 0 || !is_ident(chars[i - 1]);
            let raw = rest[0] == 'r';
            if raw && !at_word {
                out.push('r');
                i += 1;
                continue;
            }
            let hashes = if raw {
                let h = rest[1..].iter().take_while(|c| **c == '#').count();
                if rest.get(1 + h) != Some(&'"') {
                    // `r#ident`, not a string.
                    out.push('r');
                    i += 1;
                    continue;
                }
                out.extend(std::iter::repeat_n(' ', 1 + h));
                i += 1 + h;
                Some(h)
            } else {
                None
            };
            out.push(' ');
            i += 1;
            while i < chars.len() {
                let closes_raw =
                    |h: usize| chars[i + 1..].iter().take(h).filter(|c| **c == '#').count() == h;
                match (chars[i], hashes) {
                    ('\\', None) => {
                        out.push(' ');
                        if let Some(&c) = chars.get(i + 1) {
                            out.push(blank(c));
                        }
                        i += 2;
                    }
                    ('"', None) => {
                        out.push(' ');
                        i += 1;
                        break;
                    }
                    ('"', Some(h)) if closes_raw(h) => {
                        out.extend(std::iter::repeat_n(' ', h + 1));
                        i += h + 1;
                        break;
                    }
                    (c, _) => {
                        out.push(blank(c));
                        i += 1;
                    }
                }
            }
        } else if rest[0] == '\'' {
            // A char literal (`'x'`, `'\n'`, `'\u{7b}'`), or a lifetime, which stays.
            let len = match (rest.get(1), rest.get(2)) {
                (Some('\\'), _) => rest[2..].iter().position(|c| *c == '\'').map(|p| p + 3),
                (Some(_), Some('\'')) => Some(3),
                _ => None,
            };
            match len {
                Some(len) => {
                    out.extend(std::iter::repeat_n(' ', len));
                    i += len;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            out.push(rest[0]);
            i += 1;
        }
    }
    out
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
            "tidy: {} workspace members, {} HTTP resource module files and {} wiring files checked, no violations",
            model.members.len(),
            model.api_sources.len(),
            model.wiring_sources.len()
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
        assert!(
            model.api_sources.iter().any(|s| s.module == "followups"),
            "the model sees the HTTP resource modules"
        );
        assert!(
            model
                .wiring_sources
                .iter()
                .any(|s| s.path.ends_with("/followups.rs")),
            "the model sees the wiring"
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

    fn api_source(module: &str, depth: usize, text: &str) -> ApiSource {
        ApiSource {
            module: module.to_owned(),
            path: format!("{API_DIR}/{module}.rs"),
            depth,
            text: text.to_owned(),
        }
    }

    #[test]
    fn reports_an_api_module_that_imports_another() {
        let mut model = workspace_model();
        model.api_sources.push(api_source(
            "followups",
            1,
            "//! Runs.\n\nuse crate::api::common::Result;\nuse crate::api::mails::list;\n",
        ));
        let violations = check(&model);
        assert_eq!(
            violations,
            [Violation::ApiModuleImportsAnother {
                module: "followups".into(),
                file: format!("{API_DIR}/followups.rs"),
                line: 4,
                other: "mails".into(),
            }]
        );
        assert!(violations[0].to_string().contains("crate::api::mails"));
    }

    /// What each spelling of a path into `crate::api` names, from `api/followups.rs`.
    fn named(text: &str) -> Vec<String> {
        let mut violations = Vec::new();
        check_api_source(&api_source("followups", 1, text), &mut violations);
        violations
            .into_iter()
            .map(|v| match v {
                Violation::ApiModuleImportsAnother { other, line, .. } => format!("{line}:{other}"),
                other => panic!("unexpected {other}"),
            })
            .collect()
    }

    #[test]
    fn every_spelling_of_a_sibling_import_is_found() {
        // Allowed: the module itself, the shared module, everything outside `crate::api`.
        assert!(
            named(
                "use crate::api::common::{Result, params};\n\
                 use crate::api::followups::DEFAULT_RUNS;\n\
                 use crate::followups::{RunFailed, log_report};\n\
                 use crate::{AppState, auth::Caller};\n\
                 use super::common::limit;\n\
                 use freshplan_api::mails::Mail;\n\
                 let x = crate::apis::y;\n"
            )
            .is_empty()
        );
        assert_eq!(named("use crate::api::mails;"), ["1:mails"]);
        assert_eq!(named("use super::mails::list;"), ["1:mails"]);
        assert_eq!(named("use super::super::api::events;"), ["1:events"]);
        assert_eq!(
            named("use crate::api::{\n    common::params,\n    dashboard::FIGURES_EVENT,\n};"),
            ["1:dashboard"]
        );
        assert_eq!(
            named("use crate::{AppState, api::{events as feed, common}};"),
            ["1:events"]
        );
        assert_eq!(named("use crate::api::*;"), ["1:*"]);
        assert_eq!(named("use crate::api;"), ["1:api"]);
        assert_eq!(named("use crate::api::{self};"), ["1:self"]);
        assert_eq!(
            named("fn f() {\n    cfg.route(\"/x\", web::get().to(crate::api :: mails::list));\n}"),
            ["2:mails"]
        );
        // Comments and literals are no imports.
        assert!(
            named("// see crate::api::mails\n/* crate::api::events */ /// super::mails").is_empty()
        );
        assert!(
            named(r##"let s = "crate::api::mails"; let r = r#"super::mails"#; let c = '{';"##)
                .is_empty()
        );
        // In an inline module, `super` is the file's module.
        assert!(
            named("#[cfg(test)]\nmod tests {\n    use super::*;\n}\nuse super::common::Result;")
                .is_empty()
        );
        assert_eq!(
            named("mod tests {\n    fn f() { let x = 1; }\n    use super::super::mails;\n}"),
            ["3:mails"]
        );
    }

    #[test]
    fn the_wiring_does_not_name_the_http_layer() {
        let mut model = workspace_model();
        let followups = model
            .wiring_sources
            .iter_mut()
            .find(|s| s.path.ends_with("/followups.rs"))
            .expect("crates/app/src/followups.rs is wiring");
        // `super` of a module of the crate root is the root; of its tests module, the module.
        followups.text.push_str(
            "\nmod tests {\n    use super::*;\n}\nfn f() { super::api::common::not_configured(); }\n",
        );
        let line = followups.text.lines().count();
        let path = followups.path.clone();
        assert_eq!(
            check(&model),
            [Violation::WiringImportsApi { file: path, line }]
        );
    }

    #[test]
    fn nested_modules_and_the_shared_module_are_held_to_the_same_rule() {
        let mut violations = Vec::new();
        // `api/leads/query.rs`: `super` is `api::leads`, `super::super` is `crate::api`.
        check_api_source(
            &api_source(
                "leads",
                2,
                "use super::parse;\nuse super::super::activities::x;\n",
            ),
            &mut violations,
        );
        // The shared module imports no resource module.
        check_api_source(
            &api_source("common", 1, "use crate::api::mails::MAX_MAILS;\n"),
            &mut violations,
        );
        let named: Vec<(&str, &str)> = violations
            .iter()
            .map(|v| match v {
                Violation::ApiModuleImportsAnother { module, other, .. } => {
                    (module.as_str(), other.as_str())
                }
                other => panic!("unexpected {other}"),
            })
            .collect();
        assert_eq!(named, [("leads", "activities"), ("common", "mails")]);
    }

    #[test]
    fn api_sources_are_read_with_their_module_and_depth() {
        let root = std::env::temp_dir().join(format!("tidy-api-{}", std::process::id()));
        let api = root.join(API_DIR);
        std::fs::create_dir_all(api.join("leads")).unwrap();
        for (file, text) in [
            ("mod.rs", "pub mod leads;"),
            ("mails.rs", "//! Mails."),
            ("leads/mod.rs", "mod query;"),
            ("leads/query.rs", "//! Query."),
            ("README.md", "not Rust"),
        ] {
            std::fs::write(api.join(file), text).unwrap();
        }
        let read = read_api_sources(&root).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        let seen: Vec<(String, usize, String)> = read
            .into_iter()
            .map(|s| (s.module, s.depth, s.text))
            .collect();
        assert_eq!(
            seen,
            [
                ("leads".to_owned(), 1, "mod query;".to_owned()),
                ("leads".to_owned(), 2, "//! Query.".to_owned()),
                ("mails".to_owned(), 1, "//! Mails.".to_owned()),
            ]
        );
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
