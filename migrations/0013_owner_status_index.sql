-- A sales rep's lead list reads only the rep's leads of the asked statuses (issue 12: list page
-- p95 ≤ 5 ms).
--
-- The list of a sales rep (the policy: owned or collaborating) finds the rep's leads through the
-- owner index and then reads every one of them from the heap to check the status filter: at
-- 100,000 leads a rep owns ≈ 490, of which a status filter such as ACTIVE keeps ≈ 200, so more
-- than half of the heap reads were thrown away (`cargo xtask bench api`, the sales-rep shape:
-- 488 heap blocks for 202 rows). With the status in the index the bitmap keeps only the
-- matching leads before the heap is read.
--
-- The new index replaces `leads_owner_idx (owner_user_id, territory_id)` rather than joining it:
-- every use of the old one (the owner filter, the owner arm of the policy) is served by the new
-- one's leading column, and a lead write maintains as many indexes as before. Its territory
-- column stays, after the status, for the owner filter combined with a territory.
drop index leads_owner_idx;
create index leads_owner_status_idx on leads (owner_user_id, status, territory_id);
