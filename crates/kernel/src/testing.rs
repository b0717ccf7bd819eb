//! Test support for embedders: proptest strategies for the kernel types and a sequential id
//! generator. Enabled by the `testing` feature.

use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use uuid::Uuid;

use crate::{Actor, IdGenerator, Role, TerritoryId, UserId};

/// Deterministic ids `00000000-0000-7000-8000-000000000001`, `…2`, … for reproducible tests.
#[derive(Debug, Default)]
pub struct SequentialIds(AtomicU64);

impl IdGenerator for SequentialIds {
    fn new_id(&self) -> Uuid {
        let n = self.0.fetch_add(1, Ordering::Relaxed) + 1;
        Uuid::from_u128((0x7000u128 << 64) | (0x8000u128 << 48) | u128::from(n))
    }
}

/// Any territory id.
pub fn territory_id() -> impl Strategy<Value = TerritoryId> {
    prop_oneof![Just(TerritoryId::De), Just(TerritoryId::Ch)]
}

/// A user id from a small pool, so generated actors and leads often meet.
pub fn user_id() -> impl Strategy<Value = UserId> {
    (0u8..6).prop_map(|n| UserId::parse(&format!("user-{n}")).expect("valid"))
}

/// Any role.
pub fn role() -> impl Strategy<Value = Role> {
    proptest::sample::select(Role::ALL.to_vec())
}

/// Any user actor: a user id, 0–3 roles and 0–2 territories.
pub fn actor() -> impl Strategy<Value = Actor> {
    (
        user_id(),
        proptest::collection::vec(role(), 0..3),
        proptest::collection::vec(territory_id(), 0..3),
    )
        .prop_map(|(u, r, t)| Actor::new(u, r, t))
}

/// A sales rep working in the given territory.
pub fn sales_actor() -> impl Strategy<Value = Actor> {
    (user_id(), proptest::collection::vec(territory_id(), 1..3))
        .prop_map(|(u, t)| Actor::new(u, [Role::Sales], t))
}
