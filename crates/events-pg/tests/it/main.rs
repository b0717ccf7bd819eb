//! Integration tests of the event pipeline against real PostgreSQL (`DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`; the restart test starts a private server).

mod delivery;
mod faults;
mod helpers;
mod pg;
