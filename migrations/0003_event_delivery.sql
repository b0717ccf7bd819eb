-- FreshPlan Leads: event delivery (SPEC §7.3, issue 4). See docs/events-delivery.md.
--
-- One durable checkpoint per in-process event consumer (crates/events-pg). A consumer's
-- checkpoint is the outbox cursor (txid, id) of the last event whose effect it committed:
-- everything at or before it is applied. A consumer that stores its effect in the database
-- writes the effect and the checkpoint in one transaction (exactly-once effect); that transaction
-- holds a transaction-level advisory lock per consumer (not a row lock, which would assign an xid
-- early and hold back every reader's `txid < xmin` horizon), so replicas running the same
-- consumer apply each event once between them.
--
-- The outbox retention job never deletes events beyond the lowest checkpoint of the consumers
-- that the running pipeline registers (a stuck consumer keeps its backlog; the backlog alert
-- says so), and reads the checkpoints for that.
create table event_consumer_checkpoints (
    consumer    text        not null,
    cursor_txid xid8        not null,
    cursor_id   bigint      not null,
    updated_at  timestamptz not null default now(),
    constraint event_consumer_checkpoints_pkey primary key (consumer),
    -- consumer names double as metric labels: short, lower-case, no user data
    constraint event_consumer_checkpoints_consumer_ck check (consumer ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    constraint event_consumer_checkpoints_cursor_ck check (cursor_id >= 0)
);

-- Row-level security (conventions of 0002): no lead data here, but the checkpoints steer
-- delivery, so only the system context (the pipeline, `Actor::system()`) writes them; admins
-- may read them for operations. No delete policy: nobody deletes through the application role
-- (drop a retired consumer's row as the schema owner).
alter table event_consumer_checkpoints enable row level security;
alter table event_consumer_checkpoints force row level security;

create policy event_consumer_checkpoints_select on event_consumer_checkpoints for select
using ((select freshplan_ctx_roles()) && array['admin', 'system']);

create policy event_consumer_checkpoints_insert on event_consumer_checkpoints for insert
with check ((select freshplan_ctx_roles()) && array['system']);

create policy event_consumer_checkpoints_update on event_consumer_checkpoints for update
using ((select freshplan_ctx_roles()) && array['system'])
with check ((select freshplan_ctx_roles()) && array['system']);

-- 0002's default privileges already grant these to freshplan_app; stated here so the table does
-- not depend on which role runs the migration.
grant select, insert, update on event_consumer_checkpoints to freshplan_app;
