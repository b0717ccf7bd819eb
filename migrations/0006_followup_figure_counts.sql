-- The cockpit's pending and sent-today counts as a read model (SPEC §8, issue 5's goal: manager
-- figures p95 ≤ 20 ms at 1M leads).
--
-- Counting them from the rows cost ≈ 15–20 ms before a follow-up run and ≈ 400 ms after one at
-- 1M leads (measured, docs/BENCHMARKS.md): "sent today" joined the day's ~70k SENT records to
-- the leads (deleted leads and the owner live there), and right after a run the touched rows
-- are not all-visible, so the index-only counts fetch every heap page. The counts below answer
-- from a few rows per key, whatever the run did.
--
-- Same shape as 0004's `followup_sent_counts` and 0005's lead counts: a change of a counted
-- lead appends signed delta rows (a row trigger of plain single-row inserts, ≈ 0.1 ms per
-- changed lead, measured) (inserts wait for nobody, so writers cannot queue or deadlock
-- on a hot counter); a key's rows are folded into one now and then by the writers (at random,
-- skipping rows another transaction holds) and after every follow-up run
-- (`PgFollowUpStore::compact_counts`). A count is `sum(n)` over a key's rows at one snapshot:
-- exact at any time.
--
-- Everything a lead contributes is derived from the lead row alone, so one trigger on `leads`
-- maintains it:
--   metric 'T3' / 'T7' (day null): the lead is open (REGISTERED/ACTIVE), its clock runs and its
--                                  next follow-up stage is that one (the cockpit's pending);
--   metric 'SENT' (day = the Europe/Berlin date of the send): per SENT record of a lead that
--                                  is not DELETED — the send times are denormalised onto the
--                                  lead (`followup_t3_sent_at`, `followup_t7_sent_at`), written
--                                  by `PgFollowUpTx::record` in the statement that inserts the
--                                  record, like 0004's progress columns.

select set_config('freshplan.user_id', 'system', true),
       set_config('freshplan.roles', 'system', true),
       set_config('freshplan.territories', 'DE,CH', true);

alter table leads
    add column followup_t3_sent_at timestamptz,
    add column followup_t7_sent_at timestamptz;

update leads l
   set followup_t3_sent_at = (select f.processed_at from followups f
                               where f.lead_id = l.id and f.stage = 'T3' and f.status = 'SENT'),
       followup_t7_sent_at = (select f.processed_at from followups f
                               where f.lead_id = l.id and f.stage = 'T7' and f.status = 'SENT')
 where l.followup_sent;

create table followup_figure_counts (
    id            bigint           generated always as identity,
    territory_id  text             not null,
    owner_user_id text             not null, -- '' when the lead has no owner
    metric        text collate "C" not null,
    day           date,                      -- only for 'SENT'
    n             bigint           not null,
    constraint followup_figure_counts_pkey primary key (id),
    constraint followup_figure_counts_metric_ck check (
        (metric in ('T3', 'T7') and day is null) or (metric = 'SENT' and day is not null))
);
create index followup_figure_counts_key_idx
    on followup_figure_counts (territory_id, owner_user_id, metric, day) include (n);

-- What one lead contributes, as inlinable expressions (plain SQL, no function call at run
-- time): the pending metric ('T3'/'T7' or null) and the Berlin date of a send.
create function freshplan_followup_pending(status text, clock_stopped_at timestamptz,
                                           next_stage text)
returns text
language sql immutable
as $$
    select case when status in ('REGISTERED', 'ACTIVE') and clock_stopped_at is null
                then next_stage end
$$;

create function freshplan_berlin_day(at timestamptz) returns date
language sql immutable
as $$
    select (at at time zone 'Europe/Berlin')::date
$$;

-- Folds one key's rows into one, skipping rows another transaction holds (so it never waits).
create function freshplan_fold_followup_figure_counts(t text, o text, m text, d date)
returns void
language plpgsql security definer
as $$
begin
    if d is null then
        with moved as (
            delete from followup_figure_counts c
             where c.id in (select x.id from followup_figure_counts x
                             where x.territory_id = t and x.owner_user_id = o and x.metric = m
                               and x.day is null
                               for update skip locked)
            returning c.n
        )
        insert into followup_figure_counts (territory_id, owner_user_id, metric, day, n)
        select t, o, m, null, sum(n) from moved having sum(n) <> 0;
    else
        with moved as (
            delete from followup_figure_counts c
             where c.id in (select x.id from followup_figure_counts x
                             where x.territory_id = t and x.owner_user_id = o and x.metric = m
                               and x.day = d
                               for update skip locked)
            returning c.n
        )
        insert into followup_figure_counts (territory_id, owner_user_id, metric, day, n)
        select t, o, m, d, sum(n) from moved having sum(n) <> 0;
    end if;
end
$$;

-- The trigger: for a lead inserted, updated or deleted, a -1 row per key it counted under
-- before and a +1 row per key it counts under now (nothing for keys that did not change), each
-- a cached single-row insert; for 1 in 16 of the changes the keys just raised are folded too.
create function freshplan_count_followup_figures() returns trigger
language plpgsql security definer
as $$
declare
    old_territory text;
    old_owner     text;
    old_pending   text;
    old_sent      timestamptz[] := '{null,null}';
    new_territory text;
    new_owner     text;
    new_pending   text;
    new_sent      timestamptz[] := '{null,null}';
    moved         boolean;
    fold          boolean := random() < 0.0625;
begin
    if tg_op in ('UPDATE', 'DELETE') then
        old_territory := old.territory_id;
        old_owner := coalesce(old.owner_user_id, '');
        old_pending := freshplan_followup_pending(old.status, old.clock_stopped_at,
                                                  old.followup_next_stage);
        if old.status <> 'DELETED' then
            old_sent := array[old.followup_t3_sent_at, old.followup_t7_sent_at];
        end if;
    end if;
    if tg_op in ('UPDATE', 'INSERT') then
        new_territory := new.territory_id;
        new_owner := coalesce(new.owner_user_id, '');
        new_pending := freshplan_followup_pending(new.status, new.clock_stopped_at,
                                                  new.followup_next_stage);
        if new.status <> 'DELETED' then
            new_sent := array[new.followup_t3_sent_at, new.followup_t7_sent_at];
        end if;
    end if;
    moved := old_territory is distinct from new_territory or old_owner is distinct from new_owner;

    if moved or old_pending is distinct from new_pending then
        if old_pending is not null then
            insert into followup_figure_counts (territory_id, owner_user_id, metric, day, n)
            values (old_territory, old_owner, old_pending, null, -1);
        end if;
        if new_pending is not null then
            insert into followup_figure_counts (territory_id, owner_user_id, metric, day, n)
            values (new_territory, new_owner, new_pending, null, 1);
            if fold then
                perform freshplan_fold_followup_figure_counts(new_territory, new_owner,
                                                              new_pending, null);
            end if;
        end if;
    end if;
    for i in 1..2 loop
        if moved or old_sent[i] is distinct from new_sent[i] then
            if old_sent[i] is not null then
                insert into followup_figure_counts (territory_id, owner_user_id, metric, day, n)
                values (old_territory, old_owner, 'SENT', freshplan_berlin_day(old_sent[i]), -1);
            end if;
            if new_sent[i] is not null then
                insert into followup_figure_counts (territory_id, owner_user_id, metric, day, n)
                values (new_territory, new_owner, 'SENT', freshplan_berlin_day(new_sent[i]), 1);
                if fold then
                    perform freshplan_fold_followup_figure_counts(
                        new_territory, new_owner, 'SENT', freshplan_berlin_day(new_sent[i]));
                end if;
            end if;
        end if;
    end loop;
    return null;
end
$$;

create function freshplan_count_followup_figures_truncated() returns trigger
language plpgsql security definer
as $$
begin
    delete from followup_figure_counts;
    return null;
end
$$;

-- Recomputes the counts from the leads (this migration's backfill; bulk loads that write leads
-- with triggers off, like the follow-up benchmark's re-arming, call it afterwards). The sent
-- counts only from yesterday on (Berlin), as the compaction keeps them: years of per-day rows
-- would make every manager's read scan them.
create function freshplan_rebuild_followup_figure_counts() returns void
language sql security definer
as $$
    delete from followup_figure_counts;
    insert into followup_figure_counts (territory_id, owner_user_id, metric, day, n)
    select c.t, c.o, c.m, c.d, sum(c.n)
      from (select l.territory_id, coalesce(l.owner_user_id, ''),
                   freshplan_followup_pending(l.status, l.clock_stopped_at, l.followup_next_stage),
                   null::date, 1::bigint
              from leads l
            union all
            select l.territory_id, coalesce(l.owner_user_id, ''), 'SENT',
                   freshplan_berlin_day(x.at), 1
              from leads l, unnest(array[l.followup_t3_sent_at, l.followup_t7_sent_at]) x(at)
             where l.status <> 'DELETED' and x.at is not null
               and freshplan_berlin_day(x.at) >= freshplan_berlin_day(now()) - 1
           ) c(t, o, m, d, n)
     where c.m is not null
     group by 1, 2, 3, 4;
$$;

-- Folds every key with more than one row; drops the sent counts of days before the day before
-- `today` (the cockpit reads only today's; the caller's clock says which day that is). Returns
-- the number of rows folded or dropped.
create function freshplan_compact_followup_figure_counts(today date) returns bigint
language sql security definer
as $$
    with keys as (
        select territory_id, owner_user_id, metric, day
          from followup_figure_counts
         group by 1, 2, 3, 4
        having count(*) > 1
            or (metric = 'SENT' and day < today - 1)
    ), moved as (
        delete from followup_figure_counts c
         using keys k
         where c.territory_id = k.territory_id and c.owner_user_id = k.owner_user_id
           and c.metric = k.metric and c.day is not distinct from k.day
        returning c.territory_id, c.owner_user_id, c.metric, c.day, c.n
    ), folded as (
        insert into followup_figure_counts (territory_id, owner_user_id, metric, day, n)
        select territory_id, owner_user_id, metric, day, sum(n)
          from moved
         where metric <> 'SENT' or day >= today - 1
         group by 1, 2, 3, 4
        having sum(n) <> 0
        returning 1
    )
    select (select count(*) from moved)
$$;

do $$
begin
    execute format('alter function freshplan_fold_followup_figure_counts(text, text, text, date) set search_path = %I, pg_temp', current_schema());
    execute format('alter function freshplan_count_followup_figures() set search_path = %I, pg_temp', current_schema());
    execute format('alter function freshplan_count_followup_figures_truncated() set search_path = %I, pg_temp', current_schema());
    execute format('alter function freshplan_rebuild_followup_figure_counts() set search_path = %I, pg_temp', current_schema());
    execute format('alter function freshplan_compact_followup_figure_counts(date) set search_path = %I, pg_temp', current_schema());
end
$$;
revoke all on function freshplan_fold_followup_figure_counts(text, text, text, date) from public;
revoke all on function freshplan_rebuild_followup_figure_counts() from public;
revoke all on function freshplan_compact_followup_figure_counts(date) from public;
grant execute on function freshplan_compact_followup_figure_counts(date) to freshplan_app;

create trigger leads_followup_figures_insert_trg
    after insert on leads
    for each row
    when (freshplan_followup_pending(new.status, new.clock_stopped_at, new.followup_next_stage)
              is not null
          or new.followup_t3_sent_at is not null or new.followup_t7_sent_at is not null)
    execute function freshplan_count_followup_figures();

create trigger leads_followup_figures_delete_trg
    after delete on leads
    for each row
    when (freshplan_followup_pending(old.status, old.clock_stopped_at, old.followup_next_stage)
              is not null
          or old.followup_t3_sent_at is not null or old.followup_t7_sent_at is not null)
    execute function freshplan_count_followup_figures();

create trigger leads_followup_figures_update_trg
    after update of territory_id, owner_user_id, status, clock_stopped_at, followup_next_stage,
                    followup_t3_sent_at, followup_t7_sent_at on leads
    for each row
    when ((old.territory_id, old.owner_user_id, old.status, old.clock_stopped_at is null,
           old.followup_next_stage, old.followup_t3_sent_at, old.followup_t7_sent_at)
          is distinct from
          (new.territory_id, new.owner_user_id, new.status, new.clock_stopped_at is null,
           new.followup_next_stage, new.followup_t3_sent_at, new.followup_t7_sent_at))
    execute function freshplan_count_followup_figures();

create trigger leads_followup_figures_truncate_trg
    after truncate on leads
    for each statement
    execute function freshplan_count_followup_figures_truncated();

-- Read-only for the application, in the scope of the cockpit (as followup_sent_counts): admin
-- and system all; manager and viewer their territories; a sales rep the rows of its own leads.
alter table followup_figure_counts enable row level security;
alter table followup_figure_counts force row level security;
revoke insert, update, delete, truncate on followup_figure_counts from freshplan_app;
grant select on followup_figure_counts to freshplan_app;

create policy followup_figure_counts_read on followup_figure_counts for select to freshplan_app
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

create policy followup_figure_counts_maintain on followup_figure_counts for all to current_user
using (true) with check (true);

select freshplan_rebuild_followup_figure_counts();

-- The figures no longer count rows: the two partial indexes that served them only cost writes
-- (every lead update of the follow-up run and every SENT record maintained them).
drop index leads_followup_pending_idx;
drop index followups_sent_idx;
