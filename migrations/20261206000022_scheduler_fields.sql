-- What the scheduler says of a job beyond owner, name and times (Slurm: JobIDRaw, Account, Partition,
-- State). A prolog registers a job under its id as sacct writes it (array task 4_2, component 9+1 of a
-- heterogeneous job) with its raw id; a record from another source that names the raw id merges into
-- that job whatever id it came with, so no second source adds a twin. Existing summaries need no
-- recomputation: they read as no value, as the new columns do.
alter table jobs
    add column raw_id text,
    add column account text,
    add column partition text,
    add column scheduler_state text;

create index jobs_site_raw_id_idx on jobs (site_id, raw_id) where raw_id is not null;
