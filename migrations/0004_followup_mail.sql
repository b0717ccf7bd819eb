-- Follow-up automation on PostgreSQL (SPEC §6, §8, §9): the lead's follow-up progress, mail
-- templates, the mail outbox the SMTP dispatcher delivers, the run log, and the indexes behind
-- the follow-up claim and the cockpit figures.
--
-- Conventions as in 0001/0002: lower-case SQL, timestamptz, uuid keys, named constraints (the
-- adapters map violations by name), every lead-scoped table ENABLE + FORCE row level security
-- with the visibility of its lead. Business rules stay in the domain crates; derived columns are
-- computed by the domain and written by the adapter (crates/store-postgres/src/followup.rs).

-- The backfill below reads and writes lead rows, whose policies are FORCEd: give this migration
-- the system context (transaction-local, like every unit of work), so it also works when the
-- migrating role is a plain table owner rather than a superuser.
select set_config('freshplan.user_id', 'system', true),
       set_config('freshplan.roles', 'system', true),
       set_config('freshplan.territories', 'DE,CH', true);

-- ---------------------------------------------------------------------------------------------
-- The lead's follow-up progress, denormalised onto the lead so the follow-up claim and the
-- cockpit read small partial indexes instead of anti-joining every lead against `followups`:
--   followup_next_stage: the next stage without a record (`Candidate::next_stage`): 'T3' for a
--                        new lead (the column default, so lead inserts need not know it), 'T7'
--                        once T+3 has a record, null once both have one.
--   followup_sent:       at least one stage was SENT (the denominator of `conversionRate`).
-- Written only by PgFollowUpTx::record, in the statement that inserts the follow-up record, so
-- they change exactly when `followups` does. Not part of the Lead aggregate (rows.rs ignores
-- them) and not versioned: recording a follow-up is not a change of the lead.
-- ---------------------------------------------------------------------------------------------
alter table leads
    add column followup_next_stage text default 'T3',
    add column followup_sent boolean not null default false,
    add constraint leads_followup_next_stage_ck check (followup_next_stage in ('T3', 'T7'));

-- ---------------------------------------------------------------------------------------------
-- The conversion rate's counts (SPEC §8): leads with a SENT follow-up, per territory, owner and
-- status. Counting them from the leads costs a scan of every such lead with the policy checked
-- row by row (≈120 ms for a territory at 1M leads, measured); this read model answers from a few
-- hundred rows. Same shape as 0005's lead counts: a change of a counted lead appends a signed
-- delta row (inserts wait for nobody, so writers cannot queue or deadlock on a hot counter);
-- PgFollowUpStore::compact_counts folds the deltas per key after every follow-up run. A count
-- is `sum(n)` over a key's rows at one snapshot: exact at any time.
-- ---------------------------------------------------------------------------------------------
create table followup_sent_counts (
    id            bigint           generated always as identity,
    territory_id  text             not null,
    owner_user_id text             not null, -- '' when the lead has no owner
    status        text collate "C" not null,
    n             bigint           not null,
    constraint followup_sent_counts_pkey primary key (id)
);
create index followup_sent_counts_key_idx
    on followup_sent_counts (territory_id, owner_user_id, status) include (n);

create function freshplan_count_followup_sent() returns trigger
language plpgsql security definer
as $$
begin
    if tg_op in ('UPDATE', 'DELETE') and old.followup_sent then
        insert into followup_sent_counts (territory_id, owner_user_id, status, n)
        values (old.territory_id, coalesce(old.owner_user_id, ''), old.status, -1);
    end if;
    if tg_op in ('UPDATE', 'INSERT') and new.followup_sent then
        insert into followup_sent_counts (territory_id, owner_user_id, status, n)
        values (new.territory_id, coalesce(new.owner_user_id, ''), new.status, 1);
    end if;
    return null;
end
$$;

create function freshplan_count_followup_sent_truncated() returns trigger
language plpgsql security definer
as $$
begin
    delete from followup_sent_counts;
    return null;
end
$$;

-- Folds each key's rows into one (only keys with more than one row). Concurrent folds are safe:
-- a row is deleted, and so its n carried over, exactly once.
create function freshplan_compact_followup_sent_counts() returns bigint
language sql security definer
as $$
    with keys as (
        select territory_id, owner_user_id, status
          from followup_sent_counts
         group by 1, 2, 3
        having count(*) > 1
    ), moved as (
        delete from followup_sent_counts c
         using keys k
         where c.territory_id = k.territory_id and c.owner_user_id = k.owner_user_id
           and c.status = k.status
        returning c.territory_id, c.owner_user_id, c.status, c.n
    ), folded as (
        insert into followup_sent_counts (territory_id, owner_user_id, status, n)
        select territory_id, owner_user_id, status, sum(n)
          from moved
         group by 1, 2, 3
        having sum(n) <> 0
        returning 1
    )
    select (select count(*) from moved)
$$;

do $$
begin
    execute format('alter function freshplan_count_followup_sent() set search_path = %I, pg_temp', current_schema());
    execute format('alter function freshplan_count_followup_sent_truncated() set search_path = %I, pg_temp', current_schema());
    execute format('alter function freshplan_compact_followup_sent_counts() set search_path = %I, pg_temp', current_schema());
end
$$;
revoke all on function freshplan_compact_followup_sent_counts() from public;
grant execute on function freshplan_compact_followup_sent_counts() to freshplan_app;

create trigger leads_followup_sent_insert_trg
    after insert on leads
    for each row
    when (new.followup_sent)
    execute function freshplan_count_followup_sent();

create trigger leads_followup_sent_update_trg
    after update of followup_sent, status, territory_id, owner_user_id on leads
    for each row
    when ((old.followup_sent or new.followup_sent)
          and (old.followup_sent, old.status, old.territory_id, old.owner_user_id)
              is distinct from (new.followup_sent, new.status, new.territory_id, new.owner_user_id))
    execute function freshplan_count_followup_sent();

create trigger leads_followup_sent_delete_trg
    after delete on leads
    for each row
    when (old.followup_sent)
    execute function freshplan_count_followup_sent();

create trigger leads_followup_sent_truncate_trg
    after truncate on leads
    for each statement
    execute function freshplan_count_followup_sent_truncated();

-- Read-only for the application, in the scope of the cockpit: admin and system all; manager and
-- viewer their territories; a sales rep the rows of the leads it owns.
alter table followup_sent_counts enable row level security;
alter table followup_sent_counts force row level security;
revoke insert, update, delete, truncate on followup_sent_counts from freshplan_app;
grant select on followup_sent_counts to freshplan_app;

create policy followup_sent_counts_read on followup_sent_counts for select to freshplan_app
using (
    (select freshplan_ctx_roles()) && array['admin', 'system']
    or (
        territory_id = any ((select freshplan_ctx_territories())::text[])
        and (
            (select freshplan_ctx_roles()) && array['manager', 'viewer']
            or (
                'sales' = any ((select freshplan_ctx_roles())::text[])
                and owner_user_id = (select freshplan_ctx_user())
            )
        )
    )
);

-- The migrating role owns the table and runs the triggers (security definer); forced RLS
-- applies to it too unless it is a superuser or has BYPASSRLS.
create policy followup_sent_counts_maintain on followup_sent_counts for all to current_user
using (true) with check (true);

-- Existing follow-ups: the progress columns (the counts follow through the trigger).
update leads l
   set followup_next_stage = case
           when exists (select 1 from followups f where f.lead_id = l.id and f.stage = 'T7') then null
           when exists (select 1 from followups f where f.lead_id = l.id and f.stage = 'T3') then 'T7'
           else 'T3'
       end,
       followup_sent = exists (select 1 from followups f where f.lead_id = l.id and f.status = 'SENT')
 where exists (select 1 from followups f where f.lead_id = l.id);

-- "Open with a running clock and a stage pending": the leads the follow-up run may process.
-- In steady state only leads registered in the last days (and those waiting for business hours)
-- are in it, however many leads the table holds.
--   claim (FOR NO KEY UPDATE SKIP LOCKED, keyset-paginated by id): a range per stage over
--   registered_at finds only the *due* leads (most pending leads are not due yet); the few are
--   sorted by id. At 1M leads: well under a millisecond.
create index leads_followup_due_idx on leads (followup_next_stage, registered_at, id)
    where status in ('REGISTERED', 'ACTIVE') and clock_stopped_at is null
      and followup_next_stage is not null;
--   cockpit pendingT3 / pendingT7 per territory (and owner, for a sales rep's scope). The
--   collaborators are included because the leads policy reads them: with every column the
--   policy and the query use in the index, the count is an index-only scan under RLS.
create index leads_followup_pending_idx on leads (territory_id, followup_next_stage, owner_user_id)
    include (collaborator_user_ids)
    where status in ('REGISTERED', 'ACTIVE') and clock_stopped_at is null
      and followup_next_stage is not null;
--   cockpit sentToday: SENT records since local midnight (the lead id for the join and the
--   followups policy, index-only).
create index followups_sent_idx on followups (processed_at, territory_id) include (lead_id)
    where status = 'SENT';
-- Measured at 1M leads (2 years of registrations, ~9k pending, ~560k with a SENT follow-up),
-- warm cache: all four figures in one statement ≈10–15 ms for an admin or a territory manager,
-- ≈5 ms for a sales rep (≈120–380 ms when counting the conversion from the leads).

-- ---------------------------------------------------------------------------------------------
-- Mail templates (SPEC §6). One active template per stage and language; the follow-up service
-- takes exactly one per stage (`FollowUpConfig::templates`), loaded with
-- PgFollowUpStore::active_templates(language). Both territories write German ('de'); the
-- territory-specific parts (currency, number format, legal footer) are placeholders. Seeded with
-- freshplan_followup::default_templates() (a test compares them). A new version is a new row:
-- deactivate the old one and insert the new one in one transaction.
-- ---------------------------------------------------------------------------------------------
create table mail_templates (
    id         uuid        not null default gen_random_uuid(),
    stage      text        not null,
    language   text        not null,
    subject    text        not null,
    html       text        not null,
    text       text        not null,
    active     boolean     not null default true,
    created_at timestamptz not null default now(),
    constraint mail_templates_pkey primary key (id),
    constraint mail_templates_stage_ck check (stage in ('T3', 'T7')),
    constraint mail_templates_language_ck check (language ~ '^[a-z]{2}(-[A-Z]{2})?$')
);
create unique index mail_templates_active_uq on mail_templates (stage, language) where active;

insert into mail_templates (stage, language, subject, html, text) values
('T3', 'de', $tpl${{company}}: Ihre kostenlose {{starter_box}} von FreshPlan$tpl$,
$tpl$<!DOCTYPE html>
<html lang="de">
<body style="font-family: Arial, sans-serif; color: #222; line-height: 1.5;">
<p>{{salutation}},</p>
<p>vielen Dank für Ihr Interesse an FreshPlan. Damit Sie sich selbst von unserer Qualität überzeugen können, stellen wir für {{company}} gern eine kostenlose <strong>{{starter_box}}</strong> zusammen.</p>
<p>Für den Bereich {{business_type}} haben wir diese Auswahl vorgesehen: {{products}}.</p>
<p>{{seasonal}}</p>
<p>Antworten Sie einfach auf diese E-Mail, und wir vereinbaren einen Liefertermin, der in Ihren Küchenablauf passt.</p>
<p>Frische Grüße aus dem {{season}}<br>
Ihr FreshPlan-Team</p>
<hr>
<p style="font-size: 12px; color: #666;">{{legal_footer}}</p>
<p style="font-size: 12px; color: #666;">Sie möchten keine E-Mails mehr von uns erhalten? <a href="{{unsubscribe_url}}">Hier abmelden</a>.</p>
</body>
</html>
$tpl$,
$tpl${{salutation}},

vielen Dank für Ihr Interesse an FreshPlan. Damit Sie sich selbst von unserer Qualität überzeugen können, stellen wir für {{company}} gern eine kostenlose {{starter_box}} zusammen.

Für den Bereich {{business_type}} haben wir diese Auswahl vorgesehen: {{products}}.

{{seasonal}}

Antworten Sie einfach auf diese E-Mail, und wir vereinbaren einen Liefertermin, der in Ihren Küchenablauf passt.

Frische Grüße aus dem {{season}}
Ihr FreshPlan-Team

--
{{legal_footer}}

Keine E-Mails mehr erhalten: {{unsubscribe_url}}
$tpl$),
('T7', 'de', $tpl${{discount}} % Rabatt auf Ihre erste Großbestellung, {{company}}$tpl$,
$tpl$<!DOCTYPE html>
<html lang="de">
<body style="font-family: Arial, sans-serif; color: #222; line-height: 1.5;">
<p>{{salutation}},</p>
<p>wir hoffen, Sie konnten sich inzwischen ein Bild von FreshPlan machen. Für Ihre erste Großbestellung haben wir ein besonderes Angebot für {{company}}:</p>
<p style="font-size: 18px;"><strong>{{discount}} % Rabatt</strong> ab einem Bestellwert von {{minimum_order}} {{currency}}.</p>
<p>Die Konditionen sind auf den Bereich {{business_type}} zugeschnitten. Gern stellen wir Ihnen ein Sortiment zusammen und beraten Sie zu Liefertagen und Mengen.</p>
<p>Antworten Sie einfach auf diese E-Mail oder rufen Sie uns an.</p>
<p>Beste Grüße<br>
Ihr FreshPlan-Team</p>
<hr>
<p style="font-size: 12px; color: #666;">{{legal_footer}}</p>
<p style="font-size: 12px; color: #666;">Sie möchten keine E-Mails mehr von uns erhalten? <a href="{{unsubscribe_url}}">Hier abmelden</a>.</p>
</body>
</html>
$tpl$,
$tpl${{salutation}},

wir hoffen, Sie konnten sich inzwischen ein Bild von FreshPlan machen. Für Ihre erste Großbestellung haben wir ein besonderes Angebot für {{company}}:

{{discount}} % Rabatt ab einem Bestellwert von {{minimum_order}} {{currency}}.

Die Konditionen sind auf den Bereich {{business_type}} zugeschnitten. Gern stellen wir Ihnen ein Sortiment zusammen und beraten Sie zu Liefertagen und Mengen.

Antworten Sie einfach auf diese E-Mail oder rufen Sie uns an.

Beste Grüße
Ihr FreshPlan-Team

--
{{legal_footer}}

Keine E-Mails mehr erhalten: {{unsubscribe_url}}
$tpl$);

-- Templates are configuration, not lead data: every caller with a context may read them; only
-- admins (and the system) change them.
alter table mail_templates enable row level security;
alter table mail_templates force row level security;

create policy mail_templates_select on mail_templates for select
using ((select freshplan_ctx_user()) is not null);

create policy mail_templates_insert on mail_templates for insert
with check ((select freshplan_ctx_roles()) && array['admin', 'system']);

create policy mail_templates_update on mail_templates for update
using ((select freshplan_ctx_roles()) && array['admin', 'system'])
with check ((select freshplan_ctx_roles()) && array['admin', 'system']);

-- ---------------------------------------------------------------------------------------------
-- Mail outbox (SPEC §6): a SENT follow-up's rendered mail, written in the transaction of its
-- record, activity and event; delivered by crates/mail-smtp.
--   QUEUED: waiting; due when next_attempt_at <= now. A dispatcher claims due rows (FOR UPDATE
--           SKIP LOCKED), counts the attempt and pushes next_attempt_at out by a lease in one
--           short transaction, sends without holding a lock, then records the result. A crash
--           anywhere leaves the row QUEUED and due again when the lease ends: never lost.
--   SENT:   delivered to the SMTP server (sent_at set).
--   DEAD:   given up (bounded attempts, or a permanent SMTP rejection); last_error says why.
-- One mail per (lead, stage), like the record it belongs to.
-- ---------------------------------------------------------------------------------------------
create table mail_outbox (
    id              uuid        not null,
    lead_id         uuid        not null,
    territory_id    text        not null,
    stage           text        not null,
    recipient       text        not null,
    subject         text        not null,
    html            text        not null,
    text            text        not null,
    unsubscribe_url text        not null,
    status          text        not null default 'QUEUED',
    attempts        integer     not null default 0,
    next_attempt_at timestamptz not null,
    last_error      text,
    created_at      timestamptz not null,
    updated_at      timestamptz not null,
    sent_at         timestamptz,
    constraint mail_outbox_pkey primary key (id),
    constraint mail_outbox_lead_stage_uq unique (lead_id, stage),
    constraint mail_outbox_lead_fk foreign key (lead_id, territory_id)
        references leads (id, territory_id) on update cascade on delete cascade,
    constraint mail_outbox_stage_ck check (stage in ('T3', 'T7')),
    constraint mail_outbox_status_ck check (status in ('QUEUED', 'SENT', 'DEAD')),
    constraint mail_outbox_attempts_ck check (attempts >= 0),
    constraint mail_outbox_sent_at_ck check ((status = 'SENT') = (sent_at is not null))
);
-- The dispatcher's claim: due queued mails, oldest due first.
create index mail_outbox_due_idx on mail_outbox (next_attempt_at, id) where status = 'QUEUED';
-- The admin listing: by status, newest first (keyset on created_at, id).
create index mail_outbox_status_created_idx on mail_outbox (status, created_at desc, id desc);
create index mail_outbox_created_idx on mail_outbox (created_at desc, id desc);

-- Readable with the lead (SPEC §3: mails hang off their lead); written by the follow-up
-- automation and the dispatcher (system) or an admin (requeue).
alter table mail_outbox enable row level security;
alter table mail_outbox force row level security;

create policy mail_outbox_select on mail_outbox for select
using (
    (select freshplan_ctx_roles()) && array['admin', 'system']
    or exists (select 1 from leads l where l.id = mail_outbox.lead_id)
);

create policy mail_outbox_insert on mail_outbox for insert
with check ((select freshplan_ctx_roles()) && array['admin', 'system']);

create policy mail_outbox_update on mail_outbox for update
using ((select freshplan_ctx_roles()) && array['admin', 'system'])
with check ((select freshplan_ctx_roles()) && array['admin', 'system']);

-- ---------------------------------------------------------------------------------------------
-- Follow-up runs (SPEC §9 `GET /api/followups/runs`): one row per run, written with the run's
-- `lead.followup.processed.v1` event in one transaction. A failed run is recorded too, with what
-- it did before the failure.
-- ---------------------------------------------------------------------------------------------
create table followup_runs (
    run_id        uuid        not null,
    t3_count      integer     not null,
    t7_count      integer     not null,
    skipped_count integer     not null,
    started_at    timestamptz not null,
    finished_at   timestamptz not null,
    outcome       text        not null,
    error         text,
    constraint followup_runs_pkey primary key (run_id),
    constraint followup_runs_counts_ck check (t3_count >= 0 and t7_count >= 0 and skipped_count >= 0),
    constraint followup_runs_times_ck check (finished_at >= started_at),
    constraint followup_runs_outcome_ck check (
        (outcome = 'COMPLETED' and error is null) or (outcome = 'FAILED' and error is not null))
);
create index followup_runs_started_idx on followup_runs (started_at desc, run_id desc);

-- Not lead data: runs count follow-ups of every territory. Listed by admins and managers (SPEC
-- §9), written by the scheduler (system) or an admin's manual run.
alter table followup_runs enable row level security;
alter table followup_runs force row level security;

create policy followup_runs_select on followup_runs for select
using ((select freshplan_ctx_roles()) && array['admin', 'manager', 'system']);

create policy followup_runs_insert on followup_runs for insert
with check ((select freshplan_ctx_roles()) && array['admin', 'system']);

-- ---------------------------------------------------------------------------------------------
-- Grants (0002's default privileges cover tables created by the same role; spelled out here so
-- the migration does not depend on who ran 0002). Deletes have no policy: nobody deletes.
-- ---------------------------------------------------------------------------------------------
grant select, insert, update on mail_templates to freshplan_app;
grant select, insert, update on mail_outbox to freshplan_app;
grant select, insert on followup_runs to freshplan_app;
