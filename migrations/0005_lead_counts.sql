-- FreshPlan Leads: exact list totals without counting rows (issue 3; docs/decisions/0005).
--
-- `GET /api/leads` answers with the exact `total` of the filter (SPEC §9). Counting the matching
-- rows costs a scan of every visible lead in the territory (the policy is checked row by row):
-- ≈40 ms at 100k leads and ≈300-450 ms at 1M on the benchmark machine. This migration keeps the
-- number of leads per (territory, status, business type) as a read model maintained by triggers,
-- so the total of a list filtered only by those columns is a sum over a few dozen small rows.
-- The store uses it for callers who see whole territories (admin, system, manager, viewer);
-- a sales rep's own leads and the owner and text filters are counted from the leads themselves
-- through their indexes (small sets).
--
-- Writers never wait on one another here, and so can neither queue nor deadlock on a hot
-- counter: a change of a lead appends a signed delta row (inserts take no lock that anyone
-- waits for), and now and then (1 in 16 changes) the writer folds the committed deltas of that
-- key into its base row — only if nobody else is folding it (`skip locked` on the base row and
-- on each delta). A total is `sum(n)` over the base rows and the not yet folded deltas of the
-- matching keys, read at one snapshot: exact, because a fold moves deltas into the base row in
-- one transaction.
--
-- Security: both tables are lead-scoped and have forced row-level security. The application
-- role may only read them, and only the rows of territories whose leads it sees in full
-- (admin and system: all; manager and viewer: their territories). Sales reps read nothing here
-- (a territory's total is not theirs to know). The triggers run as the migrating role
-- (`security definer`, a fixed search_path), which the `maintain` policies admit.

create table lead_counts (
    territory_id  text             not null,
    status        text collate "C" not null,
    -- '' when the lead has no business type
    business_type text             not null,
    n             bigint           not null,
    constraint lead_counts_pkey primary key (territory_id, status, business_type)
);

create table lead_count_deltas (
    id            bigint generated always as identity,
    territory_id  text             not null,
    status        text collate "C" not null,
    business_type text             not null,
    n             bigint           not null,
    constraint lead_count_deltas_pkey primary key (id)
);
create index lead_count_deltas_key_idx on lead_count_deltas (territory_id, status, business_type);

-- A base row for every key the check constraints allow (folding never inserts one, so it never
-- waits on a concurrent insert of the same key), filled from the leads already there.
insert into lead_counts (territory_id, status, business_type, n)
select t.id, s.status, b.business_type, 0
  from territories t
 cross join unnest(array['REGISTERED', 'ACTIVE', 'REMINDER', 'GRACE_PERIOD', 'QUALIFIED',
                         'CONVERTED', 'LOST', 'EXPIRED', 'DELETED']) as s(status)
 cross join unnest(array['RESTAURANT', 'HOTEL', 'CANTEEN', 'CATERING', 'OTHER', ''])
       as b(business_type);
insert into lead_counts (territory_id, status, business_type, n)
select territory_id, status, coalesce(business_type, ''), count(*)
  from leads
 group by 1, 2, 3
on conflict (territory_id, status, business_type) do update set n = excluded.n;

-- Folds the committed deltas of one key into its base row, unless someone else is folding it.
create function freshplan_fold_lead_counts(t text, s text, b text) returns void
language plpgsql security definer
as $$
begin
    perform 1 from lead_counts c
     where c.territory_id = t and c.status = s and c.business_type = b
       for update skip locked;
    if not found then
        return;
    end if;
    with moved as (
        delete from lead_count_deltas d
         where d.id in (select x.id from lead_count_deltas x
                         where x.territory_id = t and x.status = s and x.business_type = b
                           for update skip locked)
        returning d.n
    )
    update lead_counts c
       set n = c.n + (select coalesce(sum(m.n), 0) from moved m)
     where c.territory_id = t and c.status = s and c.business_type = b;
end
$$;

-- Inserts and deletes: one delta per key and statement (bulk loads stay cheap).
create function freshplan_count_leads_inserted() returns trigger
language plpgsql security definer
as $$
declare
    k record;
begin
    for k in
        insert into lead_count_deltas (territory_id, status, business_type, n)
        select r.territory_id, r.status, coalesce(r.business_type, ''), count(*)
          from new_leads r
         group by 1, 2, 3
        returning territory_id, status, business_type
    loop
        if random() < 0.0625 then
            perform freshplan_fold_lead_counts(k.territory_id, k.status, k.business_type);
        end if;
    end loop;
    return null;
end
$$;

create function freshplan_count_leads_deleted() returns trigger
language plpgsql security definer
as $$
begin
    insert into lead_count_deltas (territory_id, status, business_type, n)
    select r.territory_id, r.status, coalesce(r.business_type, ''), -count(*)
      from old_leads r
     group by 1, 2, 3;
    return null;
end
$$;

-- Updates: per row, and only when a counted column changed (a patch of the phone number costs
-- nothing here).
create function freshplan_count_leads_updated() returns trigger
language plpgsql security definer
as $$
begin
    insert into lead_count_deltas (territory_id, status, business_type, n)
    values (old.territory_id, old.status, coalesce(old.business_type, ''), -1),
           (new.territory_id, new.status, coalesce(new.business_type, ''), 1);
    if random() < 0.0625 then
        perform freshplan_fold_lead_counts(new.territory_id, new.status,
                                           coalesce(new.business_type, ''));
    end if;
    return null;
end
$$;

create function freshplan_count_leads_truncated() returns trigger
language plpgsql security definer
as $$
begin
    update lead_counts set n = 0 where n <> 0;
    delete from lead_count_deltas;
    return null;
end
$$;

-- Security definer functions must not resolve names through the caller's search_path.
do $$
begin
    execute format('alter function freshplan_fold_lead_counts(text, text, text) set search_path = %I, pg_temp', current_schema());
    execute format('alter function freshplan_count_leads_inserted() set search_path = %I, pg_temp', current_schema());
    execute format('alter function freshplan_count_leads_deleted() set search_path = %I, pg_temp', current_schema());
    execute format('alter function freshplan_count_leads_updated() set search_path = %I, pg_temp', current_schema());
    execute format('alter function freshplan_count_leads_truncated() set search_path = %I, pg_temp', current_schema());
end
$$;
revoke all on function freshplan_fold_lead_counts(text, text, text) from public;

create trigger leads_count_insert_trg
    after insert on leads
    referencing new table as new_leads
    for each statement
    execute function freshplan_count_leads_inserted();

create trigger leads_count_delete_trg
    after delete on leads
    referencing old table as old_leads
    for each statement
    execute function freshplan_count_leads_deleted();

create trigger leads_count_update_trg
    after update of territory_id, status, business_type on leads
    for each row
    when ((old.territory_id, old.status, old.business_type)
          is distinct from (new.territory_id, new.status, new.business_type))
    execute function freshplan_count_leads_updated();

create trigger leads_count_truncate_trg
    after truncate on leads
    for each statement
    execute function freshplan_count_leads_truncated();

-- Row-level security: read-only for the application, whole territories only.
alter table lead_counts enable row level security;
alter table lead_counts force row level security;
alter table lead_count_deltas enable row level security;
alter table lead_count_deltas force row level security;

revoke insert, update, delete, truncate on lead_counts, lead_count_deltas from freshplan_app;
grant select on lead_counts, lead_count_deltas to freshplan_app;

create policy lead_counts_read on lead_counts for select to freshplan_app
using (
    (select freshplan_ctx_roles()) && array['admin', 'system']
    or (
        territory_id = any ((select freshplan_ctx_territories())::text[])
        and (select freshplan_ctx_roles()) && array['manager', 'viewer']
    )
);

create policy lead_count_deltas_read on lead_count_deltas for select to freshplan_app
using (
    (select freshplan_ctx_roles()) && array['admin', 'system']
    or (
        territory_id = any ((select freshplan_ctx_territories())::text[])
        and (select freshplan_ctx_roles()) && array['manager', 'viewer']
    )
);

-- The migrating role owns the tables and runs the triggers (security definer); forced RLS
-- applies to it too unless it is a superuser or has BYPASSRLS.
create policy lead_counts_maintain on lead_counts for all to current_user
using (true) with check (true);
create policy lead_count_deltas_maintain on lead_count_deltas for all to current_user
using (true) with check (true);
