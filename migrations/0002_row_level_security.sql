-- Row-level security (SPEC §3): the database is the last line.
--
-- * Every application connection runs as `freshplan_app` (NOLOGIN, NOSUPERUSER, NOBYPASSRLS):
--   store-postgres' `connect()` issues `set role freshplan_app` on every new pooled connection
--   and every unit of work begins with `set local role freshplan_app`, so even a superuser or
--   table-owner DATABASE_URL never bypasses the policies. Policies are FORCEd, so they bind the
--   table owner too; only superusers and BYPASSRLS roles (migrations, tests) skip them.
-- * The caller context is set per transaction, transaction-locally:
--     select set_config('freshplan.user_id', <user id>, true),
--            set_config('freshplan.roles', 'admin,sales', true),       -- comma list; 'system'
--            set_config('freshplan.territories', 'DE,CH', true);       -- for Actor::system()
--   A pooled connection therefore never carries one request's identity into the next.
-- * No context ⇒ every accessor below yields null/empty ⇒ every policy is false ⇒ zero rows.
--
-- Recursion: the leads policy must know the collaborators, and the collaborators (like every
-- child table) are visible exactly when their lead is. A leads policy with a subquery on
-- lead_collaborators plus a lead_collaborators policy with a subquery on leads is infinite
-- recursion. We break it by denormalising: the collaborator set lives on the lead row itself
-- (leads.collaborator_user_ids, GIN-indexed; lead_collaborators is kept in step by trigger), so
-- the leads policy reads only its own row, and every child policy may ask "is my lead visible?"
-- with `exists (select 1 from leads ...)`, which applies the leads policy. No security definer
-- function is needed for visibility, so no policy depends on the migration role being able to
-- bypass RLS. (The one security definer function, freshplan_search_leads, exists for the
-- trigram index only and applies the leads predicate itself; see there.)

-- ---------------------------------------------------------------------------------------------
-- The application role. Roles are cluster-wide while migrations run once per database (tests
-- migrate many fresh databases in parallel): create it only if missing and tolerate the race.
-- ---------------------------------------------------------------------------------------------
do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'freshplan_app') then
        begin
            create role freshplan_app nologin nosuperuser nobypassrls nocreatedb nocreaterole;
        exception when duplicate_object or unique_violation then
            null; -- created concurrently by another database's migration
        end;
    end if;
    if exists (select 1 from pg_roles
                where rolname = 'freshplan_app' and (rolsuper or rolbypassrls or rolcanlogin)) then
        raise exception 'role freshplan_app must be NOLOGIN, NOSUPERUSER and NOBYPASSRLS';
    end if;
    -- The login role must be able to SET ROLE to it (superusers always can).
    if not pg_has_role(current_user, 'freshplan_app', 'member') then
        begin
            grant freshplan_app to current_user;
        exception when unique_violation or duplicate_object then
            null; -- granted concurrently
        end;
    end if;
end
$$;

grant usage on schema public to freshplan_app;
grant select on territories to freshplan_app;
grant select, insert, update on leads to freshplan_app;
grant select, insert, delete on lead_collaborators to freshplan_app;
grant select, insert on activities to freshplan_app;
grant select, insert, update on followups to freshplan_app;
grant select, insert, update on idempotency_keys to freshplan_app;
grant select, insert, delete on event_outbox to freshplan_app;
grant usage on sequence event_outbox_id_seq to freshplan_app;
-- Tables and sequences added by later migrations (run by the same role) are usable by the
-- application role too; their migration must still enable and force RLS where lead-scoped.
alter default privileges in schema public
    grant select, insert, update, delete on tables to freshplan_app;
alter default privileges in schema public
    grant usage, select on sequences to freshplan_app;

-- ---------------------------------------------------------------------------------------------
-- Context accessors. Plain `stable` SQL (inlinable, invoker rights). Policies call them as
-- scalar subqueries, `(select freshplan_ctx_roles())`, so each is evaluated once per statement
-- (an InitPlan), not once per row.
-- ---------------------------------------------------------------------------------------------
create function freshplan_ctx_user() returns text
language sql stable parallel safe
as $$ select nullif(current_setting('freshplan.user_id', true), '') $$;

create function freshplan_ctx_roles() returns text[]
language sql stable parallel safe
as $$
    select coalesce(string_to_array(nullif(current_setting('freshplan.roles', true), ''), ','),
                    '{}'::text[])
$$;

create function freshplan_ctx_territories() returns text[]
language sql stable parallel safe
as $$
    select coalesce(string_to_array(nullif(current_setting('freshplan.territories', true), ''), ','),
                    '{}'::text[])
$$;

-- ---------------------------------------------------------------------------------------------
-- leads — the two predicates of SPEC §2 that the database enforces:
--   VISIBLE  (who may read a lead and everything hanging off it): admin, system: all;
--            manager, viewer: own territories; sales: owned or collaborating leads in own
--            territories.
--   WRITABLE (who may change a lead or log on it): admin, system: all; manager: own
--            territories; sales: owner or collaborator (collaborators log activities, which
--            touches the lead) in own territories. Viewers and service clients: never.
-- Which action a role may take on a readable lead beyond that (only owners edit, only managers
-- reassign, …) is the domain's access policy; the database guarantees the data room (territory)
-- and the sales scope.
--
-- The predicates are written out in each policy rather than wrapped in a SQL function: the
-- context lookups must stay scalar subqueries (InitPlans, evaluated once per statement), and a
-- function body with subqueries is never inlined, which makes the check a per-row function call
-- (measured: ~20x slower than the inline form on 200k rows). Keep the copies in step: the
-- integration tests compare database visibility with `freshplan_leads::access::can_read` for a
-- matrix of actors and leads.
--
--   select: VISIBLE.
--   insert: WRITABLE, and a sales rep only creates leads it owns (the creator owns the lead).
--   update: rows the caller can read (so SELECT … FOR UPDATE works for every reader); the new
--           row must be WRITABLE, so a viewer's update fails loudly instead of silently.
--   delete: no policy ⇒ nobody (soft delete is an update).
-- ---------------------------------------------------------------------------------------------
alter table leads enable row level security;
alter table leads force row level security;

create policy leads_select on leads for select
using (
    (select freshplan_ctx_roles()) && array['admin', 'system']
    or (
        territory_id = any ((select freshplan_ctx_territories())::text[])
        and (
            (select freshplan_ctx_roles()) && array['manager', 'viewer']
            or (
                'sales' = any ((select freshplan_ctx_roles())::text[])
                and (
                    owner_user_id = (select freshplan_ctx_user())
                    or collaborator_user_ids @> array[(select freshplan_ctx_user())]
                )
            )
        )
    )
);

create policy leads_insert on leads for insert
with check (
    (select freshplan_ctx_roles()) && array['admin', 'system']
    or (
        territory_id = any ((select freshplan_ctx_territories())::text[])
        and (
            'manager' = any ((select freshplan_ctx_roles())::text[])
            or (
                'sales' = any ((select freshplan_ctx_roles())::text[])
                and owner_user_id = (select freshplan_ctx_user())
            )
        )
    )
);

create policy leads_update on leads for update
using (
    (select freshplan_ctx_roles()) && array['admin', 'system']
    or (
        territory_id = any ((select freshplan_ctx_territories())::text[])
        and (
            (select freshplan_ctx_roles()) && array['manager', 'viewer']
            or (
                'sales' = any ((select freshplan_ctx_roles())::text[])
                and (
                    owner_user_id = (select freshplan_ctx_user())
                    or collaborator_user_ids @> array[(select freshplan_ctx_user())]
                )
            )
        )
    )
)
with check (
    (select freshplan_ctx_roles()) && array['admin', 'system']
    or (
        territory_id = any ((select freshplan_ctx_territories())::text[])
        and (
            'manager' = any ((select freshplan_ctx_roles())::text[])
            or (
                'sales' = any ((select freshplan_ctx_roles())::text[])
                and (
                    owner_user_id = (select freshplan_ctx_user())
                    or collaborator_user_ids @> array[(select freshplan_ctx_user())]
                )
            )
        )
    )
);

-- ---------------------------------------------------------------------------------------------
-- Text search under row-level security. A LIKE on `leads` can never use the trigram index
-- while policies apply: `~~` (textlike) is not LEAKPROOF, so the planner must evaluate the
-- policy first and cannot make the LIKE an index condition. This function runs the trigram
-- search with its owner's rights and returns the ids of the matching leads that the *caller's
-- context* may see (it applies VISIBLE itself; the context GUCs are the caller's). The list query
-- joins on `leads.id` (uuid equality is leakproof, so that uses the primary key) and the leads
-- policy applies once more as usual.
--   * Owner: the migration role. When it bypasses RLS (superuser or BYPASSRLS, as in the tests
--     and the demo), the trigram index is used; when it is a plain table owner, FORCE applies
--     inside as well and the result is the same, only without the index.
--   * It reveals nothing the caller could not read: only visible ids, only to freshplan_app.
-- `needle` is the already escaped search text (`\` escapes `%`, `_` and `\`). It is lower-cased
-- with freshplan_text like the indexed text, then relabelled to the default collation, which is
-- the index column's (an inlined SQL function's result keeps the function's result collation);
-- with any other collation the LIKE could not use the index.
-- ---------------------------------------------------------------------------------------------
create function freshplan_search_leads(needle text) returns setof uuid
language sql stable security definer parallel safe rows 100
as $$
    select l.id
      from leads l
     where freshplan_lead_search_text(l.company_name, l.contact_person, l.email, l.city)
           like '%' || (lower(needle collate freshplan_text) collate "default") || '%' escape '\'
       and (
            (select freshplan_ctx_roles()) && array['admin', 'system']
            or (
                l.territory_id = any ((select freshplan_ctx_territories())::text[])
                and (
                    (select freshplan_ctx_roles()) && array['manager', 'viewer']
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
$$;
-- A security definer function must not resolve names through the caller's search_path.
do $$
begin
    execute format('alter function freshplan_search_leads(text) set search_path = %I, pg_temp',
                   current_schema());
end
$$;
revoke all on function freshplan_search_leads(text) from public;
grant execute on function freshplan_search_leads(text) to freshplan_app;

-- ---------------------------------------------------------------------------------------------
-- lead_collaborators: visible and writable exactly when the lead is visible (written only by
-- the sync trigger, as the invoking role).
-- ---------------------------------------------------------------------------------------------
alter table lead_collaborators enable row level security;
alter table lead_collaborators force row level security;

create policy lead_collaborators_all on lead_collaborators for all
using (
    exists (select 1 from leads l where l.id = lead_collaborators.lead_id)
)
with check (
    exists (select 1 from leads l
             where l.id = lead_collaborators.lead_id
               and l.territory_id = lead_collaborators.territory_id)
);

-- ---------------------------------------------------------------------------------------------
-- activities: readable with the lead; logged by whoever may write the lead (SPEC §2: admin,
-- system; manager in own territories; sales owner or collaborator). Append-only.
-- ---------------------------------------------------------------------------------------------
alter table activities enable row level security;
alter table activities force row level security;

create policy activities_select on activities for select
using (
    (select freshplan_ctx_roles()) && array['admin', 'system']
    or exists (select 1 from leads l where l.id = activities.lead_id)
);

create policy activities_insert on activities for insert
with check (
    exists (
        select 1 from leads l
         where l.id = activities.lead_id
           and l.territory_id = activities.territory_id
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

-- ---------------------------------------------------------------------------------------------
-- followups: readable with the lead; written by the follow-up automation (system) or an admin.
-- ---------------------------------------------------------------------------------------------
alter table followups enable row level security;
alter table followups force row level security;

create policy followups_select on followups for select
using (
    (select freshplan_ctx_roles()) && array['admin', 'system']
    or exists (select 1 from leads l where l.id = followups.lead_id)
);

create policy followups_insert on followups for insert
with check ((select freshplan_ctx_roles()) && array['admin', 'system']);

create policy followups_update on followups for update
using ((select freshplan_ctx_roles()) && array['admin', 'system'])
with check ((select freshplan_ctx_roles()) && array['admin', 'system']);

-- ---------------------------------------------------------------------------------------------
-- idempotency_keys: a caller sees and writes only its own keys, in its own territories.
-- ---------------------------------------------------------------------------------------------
alter table idempotency_keys enable row level security;
alter table idempotency_keys force row level security;

create policy idempotency_keys_own on idempotency_keys for all
using (
    user_id = (select freshplan_ctx_user())
    and (
        (select freshplan_ctx_roles()) && array['admin', 'system']
        or territory_id = any ((select freshplan_ctx_territories())::text[])
    )
)
with check (
    user_id = (select freshplan_ctx_user())
    and (
        (select freshplan_ctx_roles()) && array['admin', 'system']
        or territory_id = any ((select freshplan_ctx_territories())::text[])
    )
);

-- ---------------------------------------------------------------------------------------------
-- event_outbox: any caller with a context appends (its change's events); the feed is read by
-- admin, service and system contexts only (SPEC §2, §7.5); retention deletes run as system.
-- ---------------------------------------------------------------------------------------------
alter table event_outbox enable row level security;
alter table event_outbox force row level security;

create policy event_outbox_select on event_outbox for select
using ((select freshplan_ctx_roles()) && array['admin', 'service', 'system']);

create policy event_outbox_insert on event_outbox for insert
with check ((select freshplan_ctx_user()) is not null);

create policy event_outbox_delete on event_outbox for delete
using ((select freshplan_ctx_roles()) && array['admin', 'system']);
