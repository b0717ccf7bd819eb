-- SPEC §4.5: a meaningful contact logged while the protection clock is stopped makes no automatic
-- transition then (the contact is recorded, the status stays); the transition it would have made
-- (REGISTERED → ACTIVE FIRST_CONTACT, REMINDER → ACTIVE REACTIVATED) happens when the clock
-- resumes. The domain remembers that it is due in `Protection::contact_while_stopped`; this column
-- stores it.

alter table leads add column contact_while_stopped boolean not null default false;
