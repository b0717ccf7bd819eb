-- FreshPlan Leads: tables, constraints and indexes (SPEC §1, §4, §5, §6, §7).
--
-- Conventions (STYLE.md "Persistence"): lower-case SQL, timestamptz everywhere, uuid primary keys,
-- every constraint and unique index named so that crates/store-postgres maps violations to domain
-- errors by name, in one function (src/error.rs).
--
-- Business rules live in the domain crates. The schema repeats only what the database must
-- enforce itself: the duplicate keys of SPEC §4.2 (partial unique indexes, so a race becomes a
-- 409 and never a 500), referential integrity, and the closed value sets the domain parses back.
-- Derived columns (email_key, company_key, next_sweep_at) are computed by the domain
-- (`DuplicateKeys::of`, `protection::next_due`) and written by the adapter; SQL never re-derives
-- them.
--
-- Row-level security, the application role and its grants are in 0002.

create extension if not exists pg_trgm;

-- Case-insensitive search and the company-name sort lower-case text with this collation, so
-- they do not depend on the database's default locale (a cluster made with `--locale=C` would
-- lower-case ASCII only): ICU's root locale where the server has ICU, else libc's C.UTF-8, else
-- the database's own ctype.
do $$
begin
    if exists (select 1 from pg_collation where collprovider = 'i') then
        create collation freshplan_text (provider = icu, locale = 'und');
    elsif exists (select 1 from pg_collation where collname = 'C.utf8') then
        create collation freshplan_text from "C.utf8";
    elsif exists (select 1 from pg_collation where collname = 'C.UTF-8') then
        create collation freshplan_text from "C.UTF-8";
    else
        execute format('create collation freshplan_text (locale = %L)',
                       (select datctype from pg_database where datname = current_database()));
    end if;
end
$$;

-- ---------------------------------------------------------------------------------------------
-- Territories (SPEC §1): reference data, readable by everyone. The rows mirror
-- freshplan_territory::Territory::all() (a test compares them).
-- ---------------------------------------------------------------------------------------------
create table territories (
    id                 text         not null,
    name               text         not null,
    currency_code      text         not null,
    vat_rate           numeric(5,2) not null,
    language_code      text         not null,
    time_zone          text         not null,
    payment_terms_days integer      not null,
    legal_entity       text         not null,
    vat_id             text         not null,
    constraint territories_pkey primary key (id),
    constraint territories_id_ck check (id ~ '^[A-Z]{2}$'),
    constraint territories_vat_rate_ck check (vat_rate >= 0 and vat_rate < 100),
    constraint territories_payment_terms_ck check (payment_terms_days >= 0)
);

insert into territories
    (id, name, currency_code, vat_rate, language_code, time_zone, payment_terms_days, legal_entity, vat_id)
values
    ('DE', 'Deutschland', 'EUR', 19.00, 'de-DE', 'Europe/Berlin', 30, 'FreshPlan GmbH, Berlin', 'DE123456789'),
    ('CH', 'Schweiz',     'CHF',  8.10, 'de-CH', 'Europe/Zurich', 45, 'FreshPlan AG, Zürich',  'CHE-123.456.789 MWST');

-- ---------------------------------------------------------------------------------------------
-- Leads (SPEC §4): one row per Lead aggregate.
-- ---------------------------------------------------------------------------------------------
create table leads (
    id                         uuid         not null,
    version                    bigint       not null,
    -- LeadData
    company_name               text         not null,
    contact_person             text,
    email                      text,
    phone                      text,
    website                    text,
    street                     text,
    postal_code                text,
    city                       text,
    country_code               text         not null,
    business_type              text,
    kitchen_size               text,
    employee_count             integer,
    estimated_volume           numeric(14,2),
    industry                   text,
    source                     text         not null,
    source_campaign            text,
    email_consent              boolean      not null,
    email_consent_at           timestamptz,
    -- state
    territory_id               text         not null,
    -- "C" collation: the API sorts statuses by their byte order, like the reference adapter.
    status                     text collate "C" not null,
    owner_user_id              text,
    -- The collaborator set. Denormalised here (and mirrored into lead_collaborators by trigger)
    -- so the leads policy needs no subquery on another RLS table: see 0002.
    collaborator_user_ids      text[]       not null default '{}',
    registered_at              timestamptz  not null,
    last_activity_at           timestamptz,
    last_meaningful_contact_at timestamptz,
    -- protection (SPEC §4.5)
    reminder_at                timestamptz,
    grace_until                timestamptz,
    clock_stopped_at           timestamptz,
    stop_reason                text,
    paused_seconds             bigint       not null default 0,
    paused_seconds_at_contact  bigint       not null default 0,
    -- audit
    created_at                 timestamptz  not null,
    created_by                 text         not null,
    updated_at                 timestamptz  not null,
    updated_by                 text         not null,
    -- derived by the domain, written by the adapter
    email_key                  text,          -- DuplicateKeys::email (normalised address)
    company_key                text         not null, -- DuplicateKeys::company as a JSON array
    next_sweep_at              timestamptz,   -- protection::next_due; null = the sweep never moves it
    constraint leads_pkey primary key (id),
    -- Target of the (lead_id, territory_id) foreign keys of the child tables: a lead moving
    -- between territories (country change) cascades its territory to everything hanging off it.
    constraint leads_id_territory_uq unique (id, territory_id),
    constraint leads_territory_fk foreign key (territory_id) references territories (id),
    constraint leads_version_ck check (version >= 1),
    constraint leads_status_ck check (status in (
        'REGISTERED', 'ACTIVE', 'REMINDER', 'GRACE_PERIOD', 'QUALIFIED', 'CONVERTED', 'LOST',
        'EXPIRED', 'DELETED')),
    constraint leads_business_type_ck check (business_type in (
        'RESTAURANT', 'HOTEL', 'CANTEEN', 'CATERING', 'OTHER')),
    constraint leads_kitchen_size_ck check (kitchen_size in ('SMALL', 'MEDIUM', 'LARGE')),
    constraint leads_source_ck check (source in (
        'WEB', 'EMAIL', 'PHONE', 'EVENT', 'PARTNER', 'IMPORT')),
    constraint leads_country_code_ck check (country_code ~ '^[A-Z]{2}$'),
    constraint leads_employee_count_ck check (employee_count >= 0),
    constraint leads_estimated_volume_ck check (estimated_volume >= 0),
    constraint leads_paused_seconds_ck check (paused_seconds >= 0 and paused_seconds_at_contact >= 0)
);

-- Duplicate rules of SPEC §4.2 over non-deleted leads. The keys come from the domain
-- (DuplicateKeys::of); the index names are what the adapter maps to DuplicateKind.
create unique index leads_email_key_uq on leads (email_key)
    where status <> 'DELETED' and email_key is not null;
create unique index leads_company_key_uq on leads (company_key)
    where status <> 'DELETED';

-- The text `q` searches (SPEC §9): company, contact, email and city, lower-cased, joined by a
-- unit separator (U+001F) that no stored field can contain (the domain rejects control
-- characters), so a match never spans two fields. The adapter queries
-- `freshplan_lead_search_text(...) like '%' || <escaped needle> || '%' escape '\'`, which the
-- trigram index below serves (under RLS through freshplan_search_leads, see 0002). Immutable
-- and inlinable (plain SQL, no SET clause).
create function freshplan_lead_search_text(
    company_name text, contact_person text, email text, city text
) returns text
language sql immutable parallel safe
as $$
    select lower((
        company_name
        || chr(31) || coalesce(contact_person, '')
        || chr(31) || coalesce(email, '')
        || chr(31) || coalesce(city, '')) collate freshplan_text)
$$;

create index leads_search_trgm_idx on leads
    using gin (freshplan_lead_search_text(company_name, contact_person, email, city) gin_trgm_ops);

-- List filters (SPEC §9) and the row-level-security predicates (territory, owner, collaborators).
create index leads_territory_status_idx on leads (territory_id, status);
create index leads_owner_idx on leads (owner_user_id, territory_id);
create index leads_business_type_idx on leads (business_type, territory_id);
create index leads_collaborators_idx on leads using gin (collaborator_user_ids);

-- List sorts (SPEC §9), each with the id as tie-breaker; scanned backwards for `desc`. Text
-- sorts use the "C" collation (byte order), as the reference adapter does; the company name
-- sorts case-insensitively (lower-cased with freshplan_text).
create index leads_created_at_idx on leads (created_at, id);
create index leads_updated_at_idx on leads (updated_at, id);
create index leads_company_name_idx on leads ((lower(company_name collate freshplan_text) collate "C"), id);
create index leads_status_idx on leads (status, id);
create index leads_registered_at_idx on leads (registered_at, id);
create index leads_last_activity_at_idx on leads (last_activity_at, id);
create index leads_estimated_volume_idx on leads (estimated_volume, id);
create index leads_city_idx on leads ((city collate "C"), id);

-- The protection sweep reads only due leads.
create index leads_next_sweep_at_idx on leads (next_sweep_at)
    where next_sweep_at is not null;

-- ---------------------------------------------------------------------------------------------
-- Collaborators (SPEC §4.4): the relational form of leads.collaborator_user_ids, kept in step
-- by the trigger below ("which leads does user X collaborate on", joins for read models).
-- ---------------------------------------------------------------------------------------------
create table lead_collaborators (
    lead_id      uuid not null,
    user_id      text not null,
    territory_id text not null,
    constraint lead_collaborators_pkey primary key (lead_id, user_id),
    constraint lead_collaborators_lead_fk foreign key (lead_id, territory_id)
        references leads (id, territory_id) on update cascade on delete cascade
);
create index lead_collaborators_user_idx on lead_collaborators (user_id, lead_id);

-- Runs as the invoking role (not security definer), so row-level security applies to what it
-- writes. The territory follows the lead through the cascading foreign key.
create function freshplan_sync_lead_collaborators() returns trigger
language plpgsql as $$
begin
    delete from lead_collaborators c
     where c.lead_id = new.id
       and c.user_id <> all (new.collaborator_user_ids);
    insert into lead_collaborators (lead_id, user_id, territory_id)
    select new.id, u, new.territory_id
      from unnest(new.collaborator_user_ids) as u
    on conflict (lead_id, user_id) do nothing;
    return null;
end
$$;

create trigger leads_collaborators_insert_trg
    after insert on leads
    for each row
    when (cardinality(new.collaborator_user_ids) > 0)
    execute function freshplan_sync_lead_collaborators();

create trigger leads_collaborators_update_trg
    after update of collaborator_user_ids on leads
    for each row
    when (old.collaborator_user_ids is distinct from new.collaborator_user_ids)
    execute function freshplan_sync_lead_collaborators();

-- ---------------------------------------------------------------------------------------------
-- Activities — the timeline (SPEC §5). Append-only.
-- ---------------------------------------------------------------------------------------------
create table activities (
    id                 uuid        not null,
    lead_id            uuid        not null,
    territory_id       text        not null,
    type               text        not null,
    occurred_at        timestamptz not null,
    description        text,
    user_id            text        not null,
    meaningful_contact boolean     not null,
    metadata           jsonb       not null default '{}',
    created_at         timestamptz not null,
    constraint activities_pkey primary key (id),
    constraint activities_lead_fk foreign key (lead_id, territory_id)
        references leads (id, territory_id) on update cascade on delete cascade,
    constraint activities_type_ck check (type in (
        'EMAIL', 'EMAIL_RECEIVED', 'CALL', 'MEETING', 'SAMPLE_SENT', 'SAMPLE_FEEDBACK', 'ORDER',
        'NOTE', 'CREATED', 'UPDATED', 'STATUS_CHANGED', 'OWNER_CHANGED', 'CLOCK_STOPPED',
        'CLOCK_RESUMED', 'FOLLOWUP_SENT', 'FOLLOWUP_SKIPPED', 'REMINDER_SENT',
        'GRACE_PERIOD_STARTED', 'EXPIRED', 'REACTIVATED', 'DELETED', 'UNSUBSCRIBED'))
);
-- The timeline order: newest first, id as tie-breaker.
create index activities_lead_timeline_idx on activities (lead_id, occurred_at desc, id desc);

-- ---------------------------------------------------------------------------------------------
-- Follow-up records (SPEC §6): exactly one per (lead, stage). They fill the Lead's read-only
-- `followUps` marks.
-- ---------------------------------------------------------------------------------------------
create table followups (
    id           uuid        not null default gen_random_uuid(),
    lead_id      uuid        not null,
    territory_id text        not null,
    stage        text        not null,
    status       text        not null,
    reason       text,
    processed_at timestamptz not null,
    created_at   timestamptz not null default now(),
    constraint followups_pkey primary key (id),
    constraint followups_lead_stage_uq unique (lead_id, stage),
    constraint followups_lead_fk foreign key (lead_id, territory_id)
        references leads (id, territory_id) on update cascade on delete cascade,
    constraint followups_stage_ck check (stage in ('T3', 'T7')),
    constraint followups_status_ck check (status in ('SENT', 'SKIPPED')),
    constraint followups_reason_ck check (
        (status = 'SENT' and reason is null)
        or (status = 'SKIPPED' and reason in ('NO_EMAIL', 'NO_CONSENT', 'RECENT_CONTACT')))
);
create index followups_processed_at_idx on followups (processed_at);

-- ---------------------------------------------------------------------------------------------
-- Idempotency keys of POST /api/leads (SPEC §9), per user. Expired keys (24 h, a domain rule)
-- are overwritten by the next request with the same key.
-- ---------------------------------------------------------------------------------------------
create table idempotency_keys (
    user_id      text        not null,
    key          text        not null,
    request_hash text        not null,
    lead_id      uuid        not null,
    territory_id text        not null,
    created_at   timestamptz not null,
    constraint idempotency_keys_pkey primary key (user_id, key),
    constraint idempotency_keys_lead_fk foreign key (lead_id, territory_id)
        references leads (id, territory_id) on update cascade on delete cascade
);
create index idempotency_keys_created_at_idx on idempotency_keys (created_at);

-- ---------------------------------------------------------------------------------------------
-- Transactional outbox (SPEC §7.3): one row per CloudEvent, written in the transaction of the
-- change it describes. `txid` is the writing transaction's id (xid8, never wraps): a consumer
-- cursor over (txid, id) bounded by pg_snapshot_xmin(pg_current_snapshot()) reads in commit
-- order without skipping a late-committing transaction (plain `id > last_id` can).
-- ---------------------------------------------------------------------------------------------
create table event_outbox (
    id           bigserial   not null,
    event_id     uuid        not null,
    source       text        not null,
    type         text        not null,
    subject      text,
    territory_id text,
    payload      jsonb       not null, -- the whole CloudEvent (JSON form)
    created_at   timestamptz not null default now(),
    txid         xid8        not null default pg_current_xact_id(),
    dashboard    boolean     not null default false, -- moves cockpit figures (dashboard_updates)
    constraint event_outbox_pkey primary key (id),
    constraint event_outbox_event_id_uq unique (event_id),
    constraint event_outbox_territory_fk foreign key (territory_id) references territories (id)
);
create index event_outbox_txid_idx on event_outbox (txid, id);
create index event_outbox_type_idx on event_outbox (type, txid, id);
create index event_outbox_created_at_idx on event_outbox (created_at);
