-- The cockpit's count read models (0004's `followup_sent_counts`, 0006's
-- `followup_figure_counts`) kept per *statement* instead of per row (issue 5's goal: 100k due
-- follow-ups in ≤ 60 s).
--
-- A follow-up batch updates its ~100 leads in one statement (`PgFollowUpTx`). The row triggers
-- of 0004 and 0006 ran a PL/pgSQL function per lead with two to three single-row inserts each:
-- ≈ 0.1 ms per lead, a quarter of the batch statement's time (EXPLAIN ANALYZE at 1M leads,
-- ADR 0008). The statement triggers below see the statement's old and new rows as transition
-- tables and append the signed deltas of all of them with one insert per read model, one row
-- per key (keys whose deltas cancel out append nothing). Counts stay `sum(n)` over a key's rows,
-- exact at any time; the folding changes for large statements (see the function).
--
-- An UPDATE trigger with transition tables cannot name columns (`update of …`) nor filter with
-- `when`, so it runs once for every update statement on `leads`; for a statement that changes
-- nothing counted, old and new rows give the same keys, which cancel, and nothing is written.

select set_config('freshplan.user_id', 'system', true),
       set_config('freshplan.roles', 'system', true),
       set_config('freshplan.territories', 'DE,CH', true);

-- The keys one lead counts under in `followup_figure_counts` (0006's rules): its pending stage
-- (day null) and the Berlin day of each SENT record of a lead that is not DELETED. Inlinable.
create function freshplan_followup_figure_keys(status text, clock_stopped_at timestamptz,
                                               next_stage text, t3_sent_at timestamptz,
                                               t7_sent_at timestamptz)
returns table (metric text, day date)
language sql immutable
as $$
    select k.metric, k.day
      from (values (freshplan_followup_pending(status, clock_stopped_at, next_stage), null::date),
                   (case when status <> 'DELETED' and t3_sent_at is not null then 'SENT' end,
                    freshplan_berlin_day(t3_sent_at)),
                   (case when status <> 'DELETED' and t7_sent_at is not null then 'SENT' end,
                    freshplan_berlin_day(t7_sent_at))) k(metric, day)
     where k.metric is not null
$$;

-- Appends the deltas of a statement's changed leads to both read models — -1 per key an `old`
-- row counted under, +1 per key a `new` row counts under, summed per key, nothing where they
-- cancel. A small statement (up to 64 old and new rows: an API write) folds 1 in 16 of the keys it
-- wrote, as 0006 did per row. A larger one does not: folds walk a key's rows and cost a third of
-- a follow-up batch's statement (EXPLAIN ANALYZE, 250 leads: 37 ms of 110 ms), and the follow-up
-- run, which writes the large statements, compacts the counts every 5 s while it runs and after
-- it (`PgFollowUpStore::run_exclusive`). The three statement triggers below pass their
-- transition tables as arrays (a nested function cannot see them by name).
create function freshplan_count_followup_changes(old leads[], new leads[]) returns void
language plpgsql security definer
as $$
declare
    k    record;
    fold boolean := coalesce(cardinality(old), 0) + coalesce(cardinality(new), 0) <= 64;
begin
    insert into followup_sent_counts (territory_id, owner_user_id, status, n)
    select c.territory_id, coalesce(c.owner_user_id, ''), c.status, sum(c.n)
      from (select o.territory_id, o.owner_user_id, o.status, -1 as n
              from unnest(old) o where o.followup_sent
            union all
            select w.territory_id, w.owner_user_id, w.status, 1
              from unnest(new) w where w.followup_sent) c
     group by 1, 2, 3
    having sum(c.n) <> 0;

    for k in
        insert into followup_figure_counts (territory_id, owner_user_id, metric, day, n)
        select c.territory_id, coalesce(c.owner_user_id, ''), f.metric, f.day, sum(c.n)
          from (select o.*, -1 as n from unnest(old) o
                union all
                select w.*, 1 from unnest(new) w) c
         cross join lateral freshplan_followup_figure_keys(c.status, c.clock_stopped_at,
                                                          c.followup_next_stage,
                                                          c.followup_t3_sent_at,
                                                          c.followup_t7_sent_at) f
         group by 1, 2, 3, 4
        having sum(c.n) <> 0
        returning territory_id, owner_user_id, metric, day
    loop
        if fold and random() < 0.0625 then
            perform freshplan_fold_followup_figure_counts(k.territory_id, k.owner_user_id,
                                                          k.metric, k.day);
        end if;
    end loop;
end
$$;

create function freshplan_count_followup_inserted() returns trigger
language plpgsql security definer
as $$
begin
    perform freshplan_count_followup_changes('{}'::leads[], array(select row(r.*)::leads from new_rows r));
    return null;
end
$$;

create function freshplan_count_followup_updated() returns trigger
language plpgsql security definer
as $$
begin
    perform freshplan_count_followup_changes(array(select row(r.*)::leads from old_rows r),
                                             array(select row(r.*)::leads from new_rows r));
    return null;
end
$$;

create function freshplan_count_followup_deleted() returns trigger
language plpgsql security definer
as $$
begin
    perform freshplan_count_followup_changes(array(select row(r.*)::leads from old_rows r), '{}'::leads[]);
    return null;
end
$$;

do $$
begin
    execute format('alter function freshplan_count_followup_changes(leads[], leads[]) set search_path = %I, pg_temp', current_schema());
    execute format('alter function freshplan_count_followup_inserted() set search_path = %I, pg_temp', current_schema());
    execute format('alter function freshplan_count_followup_updated() set search_path = %I, pg_temp', current_schema());
    execute format('alter function freshplan_count_followup_deleted() set search_path = %I, pg_temp', current_schema());
end
$$;
revoke all on function freshplan_count_followup_changes(leads[], leads[]) from public;

-- The row triggers of 0004 and 0006 (and their function) give way to the statement triggers.
drop trigger leads_followup_sent_insert_trg on leads;
drop trigger leads_followup_sent_update_trg on leads;
drop trigger leads_followup_sent_delete_trg on leads;
drop trigger leads_followup_figures_insert_trg on leads;
drop trigger leads_followup_figures_update_trg on leads;
drop trigger leads_followup_figures_delete_trg on leads;
drop function freshplan_count_followup_sent();
drop function freshplan_count_followup_figures();

create trigger leads_followup_counts_insert_trg
    after insert on leads
    referencing new table as new_rows
    for each statement
    execute function freshplan_count_followup_inserted();

create trigger leads_followup_counts_update_trg
    after update on leads
    referencing old table as old_rows new table as new_rows
    for each statement
    execute function freshplan_count_followup_updated();

create trigger leads_followup_counts_delete_trg
    after delete on leads
    referencing old table as old_rows
    for each statement
    execute function freshplan_count_followup_deleted();

-- The count tables churn (every processed lead appends deltas, folding deletes them): vacuum
-- them by the number of dead rows, not by a fraction of a table that stays small, so the
-- cockpit's index-only reads find all-visible pages soon after a run.
alter table followup_figure_counts set (autovacuum_vacuum_scale_factor = 0,
                                        autovacuum_vacuum_threshold = 5000,
                                        autovacuum_vacuum_insert_scale_factor = 0,
                                        autovacuum_vacuum_insert_threshold = 5000);
alter table followup_sent_counts set (autovacuum_vacuum_scale_factor = 0,
                                      autovacuum_vacuum_threshold = 5000,
                                      autovacuum_vacuum_insert_scale_factor = 0,
                                      autovacuum_vacuum_insert_threshold = 5000);
