-- 0012: CSV imports of lead lists (issue 15, ADR 0014).
--
-- An import is a resource: the uploaded file is kept here until the import finishes, and every
-- batch of leads commits together with the import's progress (`next_record`) and the outcome of
-- each of its rows. A replica that dies mid-import therefore leaves a consistent state: the leads
-- of committed batches, their rows and the position after them; whichever replica next finds the
-- lease expired resumes at that position (nothing lost, nothing doubled).

create table lead_imports (
    id              uuid        not null,
    created_by      text        not null,
    -- The importer (user id, roles, territories): a resumed import runs as them.
    actor           jsonb       not null,
    state           text        not null,
    idempotency_key text,
    request_hash    text,
    -- The file as uploaded, until the import finishes; then null (the leads hold the data).
    file            bytea,
    charset         text,
    mapping         jsonb       not null default '[]',
    encoding        text        not null,
    delimiter       text        not null,
    columns         jsonb       not null,
    unknown_columns jsonb       not null,
    total_rows      integer     not null,
    next_record     integer     not null default 0,
    created_count   integer     not null default 0,
    refused_count   integer     not null default 0,
    duplicate_count integer     not null default 0,
    worker          uuid,
    lease_until     timestamptz,
    error           text,
    created_at      timestamptz not null,
    updated_at      timestamptz not null,
    finished_at     timestamptz,
    constraint lead_imports_pkey primary key (id),
    constraint lead_imports_state_ck check (state in ('RUNNING', 'SUCCEEDED', 'FAILED')),
    constraint lead_imports_idempotency_uq unique (created_by, idempotency_key),
    constraint lead_imports_counts_ck check (
        next_record between 0 and total_rows
        and created_count + refused_count + duplicate_count = next_record)
);
create index lead_imports_running_idx on lead_imports (lease_until) where state = 'RUNNING';
create index lead_imports_created_by_idx on lead_imports (created_by, created_at desc);

-- One row per processed data record: CREATED (the lead), REFUSED (field errors, never the
-- refused values) or DUPLICATE (of an existing lead, named only when the importer may read it,
-- or of an earlier line of the file).
create table lead_import_rows (
    import_id  uuid    not null,
    line       bigint  not null,
    outcome    text    not null,
    lead_id    uuid,
    other_line bigint,
    kind       text,
    errors     jsonb,
    constraint lead_import_rows_pkey primary key (import_id, line),
    constraint lead_import_rows_import_fk foreign key (import_id)
        references lead_imports (id) on delete cascade,
    constraint lead_import_rows_outcome_ck check (outcome in ('CREATED', 'REFUSED', 'DUPLICATE'))
);

alter table lead_imports enable row level security;
alter table lead_imports force row level security;
alter table lead_import_rows enable row level security;
alter table lead_import_rows force row level security;

-- The importer sees and advances their own imports; admins and the system context every import
-- (the system context claims imports whose replica died).
create policy lead_imports_all on lead_imports for all
using (
    created_by = (select freshplan_ctx_user())
    or (select freshplan_ctx_roles()) && array['admin', 'system']
)
with check (
    created_by = (select freshplan_ctx_user())
    or (select freshplan_ctx_roles()) && array['admin', 'system']
);

create policy lead_import_rows_all on lead_import_rows for all
using (exists (select 1 from lead_imports i where i.id = lead_import_rows.import_id))
with check (exists (select 1 from lead_imports i where i.id = lead_import_rows.import_id));

grant select, insert, update on lead_imports, lead_import_rows to freshplan_app;

-- ---------------------------------------------------------------------------------------------
-- Which of a batch's duplicate keys (SPEC §4.2) an existing lead already holds — whether or not
-- the importer may read that lead, exactly as the unique indexes would refuse the insert. It
-- answers the position in the batch, the lead's id and whether the e-mail matched; the caller
-- names the lead only when a read under its own policies finds it. Like freshplan_search_leads,
-- it runs with its owner's rights (when the owner bypasses RLS; otherwise it sees what the
-- caller sees and the insert's unique indexes catch the rest).
-- ---------------------------------------------------------------------------------------------
create function freshplan_taken_keys(email_keys text[], company_keys text[])
returns table (ord integer, lead_id uuid, by_email boolean)
language sql stable security definer parallel safe
as $$
    select k.ord::integer, t.id, t.by_email
      from unnest(email_keys, company_keys) with ordinality as k(email_key, company_key, ord)
      cross join lateral (
          select l.id, coalesce(l.email_key = k.email_key, false) as by_email
            from leads l
           where l.status <> 'DELETED'
             and ((k.email_key is not null and l.email_key = k.email_key)
                  or l.company_key = k.company_key)
           order by 2 desc, l.id
           limit 1
      ) t
$$;
do $$
begin
    execute format('alter function freshplan_taken_keys(text[], text[]) set search_path = %I, pg_temp',
                   current_schema());
end
$$;
revoke all on function freshplan_taken_keys(text[], text[]) from public;
grant execute on function freshplan_taken_keys(text[], text[]) to freshplan_app;
