-- The number a job's raw id (else its id) starts with, per site: a node's prolog registration compares
-- the job's number with the highest its site has seen (issue 33, N4), which read every job of the site
-- (300,000 jobs in three sites: 144 ms a registration; with it 0.05 ms) and now reads one index entry. The expression is the one
-- `db::jobs::highest_raw_number` asks for, word for word.
create index jobs_site_raw_number
    on jobs (site_id, (substring(coalesce(raw_id, id) from '^[0-9]{1,18}')::int8));
