use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::TerritoryId;

/// A user id (the JWT `sub`): 1–64 characters after trimming, none of them a control character.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

/// Errors building an [`Actor`] or its parts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActorError {
    /// The user id is empty or longer than 64 characters.
    #[error("a user id must be 1-64 characters")]
    InvalidUserId,
    /// The user id contains a control character (U+0000, a line break, …), which no identity
    /// provider issues and PostgreSQL cannot store (U+0000).
    #[error("a user id must not contain control characters")]
    UserIdControlCharacter,
}

impl UserId {
    /// The longest accepted id, in characters.
    pub const MAX_LEN: usize = 64;

    /// Parses a user id: trimmed, 1–64 characters, no control characters.
    ///
    /// ```
    /// use freshplan_kernel::{ActorError, UserId};
    /// assert_eq!(UserId::parse(" rep-1 ").unwrap().as_str(), "rep-1");
    /// assert_eq!(UserId::parse("rep\u{0}1"), Err(ActorError::UserIdControlCharacter));
    /// ```
    pub fn parse(raw: &str) -> Result<Self, ActorError> {
        let trimmed = raw.trim();
        let len = trimmed.chars().count();
        if len == 0 || len > Self::MAX_LEN {
            return Err(ActorError::InvalidUserId);
        }
        if trimmed.chars().any(char::is_control) {
            return Err(ActorError::UserIdControlCharacter);
        }
        Ok(UserId(trimmed.to_owned()))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UserId {
    type Error = ActorError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        UserId::parse(&value)
    }
}

impl From<UserId> for String {
    fn from(value: UserId) -> Self {
        value.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A role of SPEC §2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, in every territory.
    Admin,
    /// Everything in the own territories, including reassignment and stop-the-clock.
    Manager,
    /// Own and collaborating leads in the own territories.
    Sales,
    /// Read-only, in the own territories.
    Viewer,
    /// Machine clients: the event feed only.
    Service,
}

impl Role {
    /// Every role, in a stable order.
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Manager,
        Role::Sales,
        Role::Viewer,
        Role::Service,
    ];

    /// Parses a role name case-insensitively; unknown names are `None` (and ignored by callers).
    pub fn parse(name: &str) -> Option<Role> {
        match name.trim().to_ascii_lowercase().as_str() {
            "admin" => Some(Role::Admin),
            "manager" => Some(Role::Manager),
            "sales" => Some(Role::Sales),
            "viewer" => Some(Role::Viewer),
            "service" => Some(Role::Service),
            _ => None,
        }
    }

    /// The lower-case name used in tokens, logs and the database context.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Manager => "manager",
            Role::Sales => "sales",
            Role::Viewer => "viewer",
            Role::Service => "service",
        }
    }

    const fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of roles (a small bit set).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct RoleSet(u8);

impl RoleSet {
    /// The empty set.
    pub const EMPTY: RoleSet = RoleSet(0);

    /// Builds a set from role names, ignoring unknown names (SPEC §2).
    pub fn from_names<I, S>(names: I) -> RoleSet
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        names
            .into_iter()
            .filter_map(|n| Role::parse(n.as_ref()))
            .collect()
    }

    /// Whether the set holds `role`.
    pub const fn contains(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }

    /// Adds a role.
    pub fn insert(&mut self, role: Role) {
        self.0 |= role.bit();
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The roles in the set, in [`Role::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL.into_iter().filter(move |r| self.contains(*r))
    }
}

impl FromIterator<Role> for RoleSet {
    fn from_iter<T: IntoIterator<Item = Role>>(iter: T) -> Self {
        let mut set = RoleSet::EMPTY;
        for r in iter {
            set.insert(r);
        }
        set
    }
}

/// Who performs an action: a user with roles and territories, or the system itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    user_id: UserId,
    roles: RoleSet,
    territories: BTreeSet<TerritoryId>,
    system: bool,
}

impl Actor {
    /// A user actor. An admin works in every territory whatever the token says (SPEC §2).
    pub fn new(
        user_id: UserId,
        roles: impl IntoIterator<Item = Role>,
        territories: impl IntoIterator<Item = TerritoryId>,
    ) -> Actor {
        let roles: RoleSet = roles.into_iter().collect();
        let territories = if roles.contains(Role::Admin) {
            TerritoryId::ALL.into_iter().collect()
        } else {
            territories.into_iter().collect()
        };
        Actor {
            user_id,
            roles,
            territories,
            system: false,
        }
    }

    /// The explicit `system` context that background work runs as (SPEC §3): all territories,
    /// no user roles. It is not a bypass: it is one more identity the policies know.
    pub fn system() -> Actor {
        Actor {
            user_id: UserId("system".to_owned()),
            roles: RoleSet::EMPTY,
            territories: TerritoryId::ALL.into_iter().collect(),
            system: true,
        }
    }

    /// The user id (`system` for the system actor).
    pub fn user_id(&self) -> &UserId {
        &self.user_id
    }

    /// The roles.
    pub fn roles(&self) -> RoleSet {
        self.roles
    }

    /// The territories this actor works in.
    pub fn territories(&self) -> &BTreeSet<TerritoryId> {
        &self.territories
    }

    /// Whether this is the background `system` actor.
    pub fn is_system(&self) -> bool {
        self.system
    }

    /// Whether the actor holds `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(role)
    }

    /// Whether the actor works in `territory`.
    pub fn works_in(&self, territory: TerritoryId) -> bool {
        self.territories.contains(&territory)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_case_insensitive_and_unknown_ignored() {
        let set = RoleSet::from_names(["ADMIN", "Sales", "offline_access", "uma_authorization"]);
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            vec![Role::Admin, Role::Sales]
        );
    }

    #[test]
    fn user_id_bounds() {
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse("   ").is_err());
        assert!(UserId::parse(&"x".repeat(64)).is_ok());
        assert!(UserId::parse(&"x".repeat(65)).is_err());
        assert_eq!(UserId::parse("  a ").unwrap().as_str(), "a");
    }

    #[test]
    fn user_id_refuses_control_characters() {
        for bad in [
            "a\u{0}b",
            "\u{0}",
            "a\nb",
            "a\tb",
            "a\rb",
            "a\u{7f}b",
            "a\u{1b}[31mb",
            "a\u{85}b",
        ] {
            assert_eq!(
                UserId::parse(bad),
                Err(ActorError::UserIdControlCharacter),
                "{bad:?}"
            );
        }
        // surrounding whitespace (incl. line breaks) is trimmed, not refused
        assert_eq!(UserId::parse("\ta\n").unwrap().as_str(), "a");
        // other Unicode is fine
        assert_eq!(
            UserId::parse("jürg.o'brien@ch").unwrap().as_str(),
            "jürg.o'brien@ch"
        );
        // the length check counts characters and comes first
        assert_eq!(
            UserId::parse(&"\u{0}".repeat(65)),
            Err(ActorError::InvalidUserId)
        );
        // deserialising goes through parse
        assert!(serde_json::from_str::<UserId>("\"a\\u0000b\"").is_err());
    }

    proptest::proptest! {
        #[test]
        fn a_parsed_user_id_never_holds_a_control_character(raw in "\\PC{0,3}[\u{0}-\u{1f}\u{7f}-\u{9f}]?\\PC{0,3}") {
            if let Ok(id) = UserId::parse(&raw) {
                proptest::prop_assert!(!id.as_str().chars().any(char::is_control));
                proptest::prop_assert_eq!(id.as_str(), raw.trim());
            }
        }
    }

    #[test]
    fn every_role_is_read_back_from_its_name_which_is_its_wire_name() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role), "{role:?}");
            assert_eq!(
                Role::parse(&format!(" {} ", role.as_str().to_uppercase())),
                Some(role)
            );
            // Tokens, logs and the database context use the same lower-case name as serde.
            assert_eq!(
                serde_json::to_string(&role).unwrap(),
                format!("\"{}\"", role.as_str())
            );
        }
        assert_eq!(Role::parse("superuser"), None);
    }

    proptest::proptest! {
        #[test]
        fn a_role_set_holds_exactly_the_roles_put_into_it(
            picked in proptest::collection::vec(proptest::sample::select(Role::ALL.to_vec()), 0..8)
        ) {
            let set: RoleSet = picked.iter().copied().collect();
            let expected: Vec<Role> = Role::ALL.into_iter().filter(|r| picked.contains(r)).collect();
            proptest::prop_assert_eq!(set.iter().collect::<Vec<_>>(), expected.clone());
            proptest::prop_assert_eq!(set.is_empty(), expected.is_empty());
            let actor = Actor::new(UserId::parse("u").unwrap(), picked.iter().copied(), []);
            proptest::prop_assert_eq!(actor.roles(), set);
            for role in Role::ALL {
                proptest::prop_assert_eq!(actor.has_role(role), picked.contains(&role));
            }
        }
    }

    #[test]
    fn the_system_actor_is_the_only_system_one_and_holds_no_role_in_every_territory() {
        let system = Actor::system();
        assert!(system.is_system());
        assert!(system.roles().is_empty());
        assert!(Role::ALL.into_iter().all(|r| !system.has_role(r)));
        assert_eq!(
            *system.territories(),
            TerritoryId::ALL.into_iter().collect::<BTreeSet<_>>()
        );
        assert_eq!(String::from(system.user_id().clone()), "system");
        let admin = Actor::new(UserId::parse("a").unwrap(), [Role::Admin], []);
        assert!(!admin.is_system());
    }

    #[test]
    fn a_user_id_converts_to_its_trimmed_text() {
        assert_eq!(String::from(UserId::parse("  rep-1 ").unwrap()), "rep-1");
    }

    #[test]
    fn admin_has_every_territory() {
        let a = Actor::new(UserId::parse("a").unwrap(), [Role::Admin], []);
        assert!(a.works_in(TerritoryId::De) && a.works_in(TerritoryId::Ch));
    }

    #[test]
    fn non_admin_keeps_only_its_territories() {
        let m = Actor::new(
            UserId::parse("m").unwrap(),
            [Role::Manager],
            [TerritoryId::Ch],
        );
        assert!(!m.works_in(TerritoryId::De));
        assert!(m.works_in(TerritoryId::Ch));
        let none = Actor::new(UserId::parse("n").unwrap(), [Role::Sales], []);
        assert!(none.territories().is_empty());
    }
}
