-- The follow-up count triggers cost an API write (almost) nothing unless it changes a count
-- (issue 12: the write path).
--
-- 0007's statement triggers handed their transition tables to one shared function as arrays of
-- whole `leads` rows (a nested function cannot see them by name) and unnested them again: for a
-- single-row write that was ≈ 0.3 ms of a create's ≈ 1.1 ms in PostgreSQL (pg_stat_statements,
-- `cargo xtask cost --verbose`). And the UPDATE trigger — it cannot name columns (`update of …`)
-- nor filter with `when` when it has transition tables — ran its two delta inserts for every
-- update, also for a new phone number, which counts nowhere.
--
-- Now each trigger function reads its transition tables directly (the same SQL as 0007's
-- function, once per trigger), and the UPDATE function first compares the columns the read
-- models are keyed on and returns when no row changed one of them. What is counted, the deltas,
-- and when keys are folded stay as 0007 defines them (statements of up to 64 old and new rows
-- fold 1 in 16 of the keys they wrote; the follow-up run compacts after its large ones), except
-- that deletes no longer fold (they are clean-ups; compaction takes their deltas).

create or replace function freshplan_count_followup_inserted() returns trigger
language plpgsql security definer
as $$
declare
    k    record;
    fold boolean; -- counted when first needed (1 in 16 keys)
begin
    insert into followup_sent_counts (territory_id, owner_user_id, status, n)
    select w.territory_id, coalesce(w.owner_user_id, ''), w.status, count(*)
      from new_rows w
     where w.followup_sent
     group by 1, 2, 3;

    for k in
        insert into followup_figure_counts (territory_id, owner_user_id, metric, day, n)
        select w.territory_id, coalesce(w.owner_user_id, ''), f.metric, f.day, count(*)
          from new_rows w
         cross join lateral freshplan_followup_figure_keys(w.status, w.clock_stopped_at,
                                                          w.followup_next_stage,
                                                          w.followup_t3_sent_at,
                                                          w.followup_t7_sent_at) f
         group by 1, 2, 3, 4
        returning territory_id, owner_user_id, metric, day
    loop
        if random() < 0.0625 then
            fold := coalesce(fold, (select count(*) from new_rows) <= 64);
            if fold then
                perform freshplan_fold_followup_figure_counts(k.territory_id, k.owner_user_id,
                                                              k.metric, k.day);
            end if;
        end if;
    end loop;
    return null;
end
$$;

create or replace function freshplan_count_followup_updated() returns trigger
language plpgsql security definer
as $$
declare
    k    record;
    fold boolean; -- counted when first needed (1 in 16 keys)
begin
    if not exists (select 1
                     from old_rows o
                     join new_rows n on n.id = o.id
                    where (o.territory_id, o.owner_user_id, o.status, o.clock_stopped_at,
                           o.followup_next_stage, o.followup_sent, o.followup_t3_sent_at,
                           o.followup_t7_sent_at)
                          is distinct from
                          (n.territory_id, n.owner_user_id, n.status, n.clock_stopped_at,
                           n.followup_next_stage, n.followup_sent, n.followup_t3_sent_at,
                           n.followup_t7_sent_at))
    then
        return null;
    end if;

    insert into followup_sent_counts (territory_id, owner_user_id, status, n)
    select c.territory_id, coalesce(c.owner_user_id, ''), c.status, sum(c.n)
      from (select o.territory_id, o.owner_user_id, o.status, -1 as n
              from old_rows o where o.followup_sent
            union all
            select w.territory_id, w.owner_user_id, w.status, 1
              from new_rows w where w.followup_sent) c
     group by 1, 2, 3
    having sum(c.n) <> 0;

    for k in
        insert into followup_figure_counts (territory_id, owner_user_id, metric, day, n)
        select c.territory_id, coalesce(c.owner_user_id, ''), f.metric, f.day, sum(c.n)
          from (select o.territory_id, o.owner_user_id, o.status, o.clock_stopped_at,
                       o.followup_next_stage, o.followup_t3_sent_at, o.followup_t7_sent_at,
                       -1 as n
                  from old_rows o
                union all
                select w.territory_id, w.owner_user_id, w.status, w.clock_stopped_at,
                       w.followup_next_stage, w.followup_t3_sent_at, w.followup_t7_sent_at, 1
                  from new_rows w) c
         cross join lateral freshplan_followup_figure_keys(c.status, c.clock_stopped_at,
                                                          c.followup_next_stage,
                                                          c.followup_t3_sent_at,
                                                          c.followup_t7_sent_at) f
         group by 1, 2, 3, 4
        having sum(c.n) <> 0
        returning territory_id, owner_user_id, metric, day
    loop
        if random() < 0.0625 then
            fold := coalesce(fold, (select count(*) from new_rows) <= 32);
            if fold then
                perform freshplan_fold_followup_figure_counts(k.territory_id, k.owner_user_id,
                                                              k.metric, k.day);
            end if;
        end if;
    end loop;
    return null;
end
$$;

create or replace function freshplan_count_followup_deleted() returns trigger
language plpgsql security definer
as $$
begin
    insert into followup_sent_counts (territory_id, owner_user_id, status, n)
    select o.territory_id, coalesce(o.owner_user_id, ''), o.status, -count(*)
      from old_rows o
     where o.followup_sent
     group by 1, 2, 3;

    insert into followup_figure_counts (territory_id, owner_user_id, metric, day, n)
    select o.territory_id, coalesce(o.owner_user_id, ''), f.metric, f.day, -count(*)
      from old_rows o
     cross join lateral freshplan_followup_figure_keys(o.status, o.clock_stopped_at,
                                                      o.followup_next_stage,
                                                      o.followup_t3_sent_at,
                                                      o.followup_t7_sent_at) f
     group by 1, 2, 3, 4;
    return null;
end
$$;

drop function freshplan_count_followup_changes(leads[], leads[]);

do $$
begin
    execute format('alter function freshplan_count_followup_inserted() set search_path = %I, pg_temp', current_schema());
    execute format('alter function freshplan_count_followup_updated() set search_path = %I, pg_temp', current_schema());
    execute format('alter function freshplan_count_followup_deleted() set search_path = %I, pg_temp', current_schema());
end
$$;
