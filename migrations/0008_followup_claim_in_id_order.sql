-- The follow-up claim walks the open leads in id order (issue 5's goal: 100k due follow-ups in
-- ≤ 60 s).
--
-- A run pages through the due leads by id (`PgFollowUpTx::claim_due`: `id > cursor order by id
-- limit 100`). 0004's `leads_followup_due_idx` is ordered by (stage, registered_at, id), so every
-- claim read *all* due leads of both stages from the index and the heap, sorted them by id and
-- kept 100: a run over n due leads cost O(n²) (≈ 16 ms per claim at 100k due, measured, most of
-- the run's database time). This index has the same predicate ordered by id: a claim reads the
-- open leads after the cursor until it has its page, and a whole pass reads each open lead once.
-- Open leads that are not due yet (registered within the last 3 or 7 days) are read and
-- skipped; there are few of them.

create index leads_followup_open_idx on leads (id)
    where status in ('REGISTERED', 'ACTIVE') and clock_stopped_at is null
      and followup_next_stage is not null;

drop index leads_followup_due_idx;
