-- Personal data (SPEC §13, docs/decisions/0012): the consent ledger, erasure, retention and the
-- audit log of exports, erasures and retention runs.
--
-- What is personal is decided once, in the domain (`freshplan_leads::personal`); the adapter
-- (crates/store-postgres) redacts exactly that. This migration adds the columns and tables that
-- record it, the indexes retention and erasure read by, and the row-level-security policies
-- that let an admin (erasure) or the system (retention) rewrite rows that are otherwise
-- append-only.

-- The backfill of the consent ledger below reads and writes lead rows, whose policies are FORCEd:
-- the system context (transaction-local), as in 0004.
select set_config('freshplan.user_id', 'system', true),
       set_config('freshplan.roles', 'system', true),
       set_config('freshplan.territories', 'DE,CH', true);

-- ---------------------------------------------------------------------------------------------
-- Leads: when the person was erased (null: never), and where the current consent state came
-- from (null: never given). An erased lead keeps what statistics need (status, territory,
-- country, dates, business data); its personal fields are null and its company name is the
-- domain's placeholder, which names the lead id so that duplicate keys stay unique.
-- ---------------------------------------------------------------------------------------------
alter table leads add column erased_at timestamptz;
alter table leads add column email_consent_source text;
alter table leads add constraint leads_email_consent_source_ck
    check (email_consent_source in ('API', 'UNSUBSCRIBE', 'IMPORT', 'ERASURE'));

-- Retention (the sweep): closed leads not erased yet, oldest last change first.
create index leads_retention_idx on leads (updated_at, id)
    where status in ('LOST', 'EXPIRED', 'DELETED') and erased_at is null;

-- The timeline gains ERASED; erasure redacts the free text of entries (an update only admins
-- and the system may make — the timeline stays append-only for everyone else).
alter table activities drop constraint activities_type_ck;
alter table activities add constraint activities_type_ck check (type in (
    'EMAIL', 'EMAIL_RECEIVED', 'CALL', 'MEETING', 'SAMPLE_SENT', 'SAMPLE_FEEDBACK', 'ORDER',
    'NOTE', 'CREATED', 'UPDATED', 'STATUS_CHANGED', 'OWNER_CHANGED', 'CLOCK_STOPPED',
    'CLOCK_RESUMED', 'FOLLOWUP_SENT', 'FOLLOWUP_SKIPPED', 'REMINDER_SENT',
    'GRACE_PERIOD_STARTED', 'EXPIRED', 'REACTIVATED', 'DELETED', 'UNSUBSCRIBED', 'ERASED'));

create policy activities_erase on activities for update
using ((select freshplan_ctx_roles()) && array['admin', 'system'])
with check ((select freshplan_ctx_roles()) && array['admin', 'system']);
grant update on activities to freshplan_app;

-- ---------------------------------------------------------------------------------------------
-- The consent ledger (DSGVO Art. 7(1): the controller must be able to prove consent): one row
-- per change of a lead's email consent, with time, actor and source. Append-only; readable with
-- the lead, written with the change of the lead (same transaction).
-- ---------------------------------------------------------------------------------------------
create table consent_changes (
    id           uuid        not null,
    lead_id      uuid        not null,
    territory_id text        not null,
    consent      boolean     not null,
    source       text        not null,
    changed_at   timestamptz not null,
    changed_by   text        not null,
    constraint consent_changes_pkey primary key (id),
    constraint consent_changes_lead_fk foreign key (lead_id, territory_id)
        references leads (id, territory_id) on update cascade on delete cascade,
    constraint consent_changes_source_ck
        check (source in ('API', 'UNSUBSCRIBE', 'IMPORT', 'ERASURE'))
);
create index consent_changes_lead_idx on consent_changes (lead_id, changed_at, id);

-- Consent given before the ledger existed: one entry each, from the lead's own record of it (the
-- API was the only way to give consent; who gave it: the creator when it came with the lead,
-- else the last changer), and the lead's source. Written before row-level security is switched
-- on for the table: the entries carry the names of the users who gave the consent.
insert into consent_changes (id, lead_id, territory_id, consent, source, changed_at, changed_by)
select gen_random_uuid(), l.id, l.territory_id, true, 'API', l.email_consent_at,
       case when l.email_consent_at = l.created_at then l.created_by else l.updated_by end
  from leads l
 where l.email_consent and l.email_consent_at is not null;
update leads set email_consent_source = 'API' where email_consent;

alter table consent_changes enable row level security;
alter table consent_changes force row level security;

create policy consent_changes_select on consent_changes for select
using (
    (select freshplan_ctx_roles()) && array['admin', 'system']
    or exists (select 1 from leads l where l.id = consent_changes.lead_id)
);

-- Recorded by whoever may write the lead (the write predicate of activities_insert), in its own
-- name; the territory must be the lead's.
create policy consent_changes_insert on consent_changes for insert
with check (
    changed_by = (select freshplan_ctx_user())
    and exists (
        select 1 from leads l
         where l.id = consent_changes.lead_id
           and l.territory_id = consent_changes.territory_id
           and (
               (select freshplan_ctx_roles()) && array['admin', 'system']
               or (
                   l.territory_id = any ((select freshplan_ctx_territories())::text[])
                   and (
                       'manager' = any ((select freshplan_ctx_roles())::text[])
                       or (
                           'sales' = any ((select freshplan_ctx_roles())::text[])
                           and (
                               l.owner_user_id = (select freshplan_ctx_user())
                               or l.collaborator_user_ids @> array[(select freshplan_ctx_user())]
                           )
                       )
                   )
               )
           )
    )
);
grant select, insert on consent_changes to freshplan_app;


-- ---------------------------------------------------------------------------------------------
-- Mail outbox: an erased mail (recipient, subject, bodies and link removed, never sent again) and
-- a mail whose bodies retention removed. Neither can be requeued.
-- ---------------------------------------------------------------------------------------------
alter table mail_outbox add column erased_at timestamptz;
alter table mail_outbox add column body_erased_at timestamptz;
create index mail_outbox_body_retention_idx on mail_outbox (updated_at, id)
    where status <> 'QUEUED' and body_erased_at is null;

-- ---------------------------------------------------------------------------------------------
-- Event outbox: the events whose data carries personal data (the domain's list:
-- `lead.created.v1` names the company) are found by lead; erasure redacts them (admin, system);
-- a manager's export reads the events of the leads the manager can read (by the lead, not by the
-- event's territory, which stays what it was when the event was written).
-- ---------------------------------------------------------------------------------------------
create index event_outbox_personal_idx on event_outbox (subject) where type = 'lead.created.v1';

create policy event_outbox_erase on event_outbox for update
using ((select freshplan_ctx_roles()) && array['admin', 'system'])
with check ((select freshplan_ctx_roles()) && array['admin', 'system']);

-- The subject as a lead id, or null when it is not a UUID (inlinable, immutable).
create function freshplan_subject_lead_id(subject text) returns uuid
language sql immutable parallel safe
as $$
    select case
        when subject ~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'
        then subject::uuid
    end
$$;
grant execute on function freshplan_subject_lead_id(text) to freshplan_app;

create policy event_outbox_select_lead on event_outbox for select
using (
    'manager' = any ((select freshplan_ctx_roles())::text[])
    and exists (
        select 1 from leads l where l.id = freshplan_subject_lead_id(event_outbox.subject)
    )
);
grant update on event_outbox to freshplan_app;

-- ---------------------------------------------------------------------------------------------
-- Idempotency replays hold a hash of the request body (personal data in it): erasure deletes
-- the lead's keys, whoever made them. A DELETE with a WHERE clause must pass a SELECT policy
-- too, so admins and the system see every key (the replay lookup filters by its own user anyway).
-- ---------------------------------------------------------------------------------------------
create policy idempotency_keys_erase on idempotency_keys for delete
using ((select freshplan_ctx_roles()) && array['admin', 'system']);
create policy idempotency_keys_erase_select on idempotency_keys for select
using ((select freshplan_ctx_roles()) && array['admin', 'system']);
grant delete on idempotency_keys to freshplan_app;
create index idempotency_keys_lead_idx on idempotency_keys (lead_id);

-- ---------------------------------------------------------------------------------------------
-- The audit log of personal-data processing: exports, erasures and retention runs. Who, when,
-- which lead, why — never the personal data itself (the reason is a closed set of codes, not
-- free text). Append-only; listed by admins.
-- ---------------------------------------------------------------------------------------------
create table audit_log (
    id                 uuid        not null,
    at                 timestamptz not null,
    actor              text        not null,
    action             text        not null,
    lead_id            uuid,
    territory_id       text,
    reason             text,
    leads_erased       integer     not null default 0,
    mail_bodies_erased integer     not null default 0,
    constraint audit_log_pkey primary key (id),
    constraint audit_log_action_ck check (action in (
        'PERSONAL_DATA_EXPORTED', 'LEAD_ERASED', 'RETENTION_RUN')),
    constraint audit_log_territory_fk foreign key (territory_id) references territories (id),
    constraint audit_log_counts_ck check (leads_erased >= 0 and mail_bodies_erased >= 0)
);
create index audit_log_at_idx on audit_log (at desc, id desc);

alter table audit_log enable row level security;
alter table audit_log force row level security;

create policy audit_log_select on audit_log for select
using ((select freshplan_ctx_roles()) && array['admin', 'system']);

create policy audit_log_insert on audit_log for insert
with check (
    actor = (select freshplan_ctx_user())
    and (select freshplan_ctx_roles()) && array['admin', 'manager', 'system']
);
grant select, insert on audit_log to freshplan_app;
