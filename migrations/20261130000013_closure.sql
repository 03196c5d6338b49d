-- Where the energy went: each job's GPU energy per UTC hour beside its IT energy per hour (the rest of
-- which is its CPU and DRAM share), so a site's day can be split into what jobs drew on GPUs and on
-- their nodes, what idle GPUs and idle node shares drew, and what the meters saw beyond both.
-- Summaries computed before this column read '{}': they are marked stale so the refresher fills it in.
alter table job_energy add column gpu_j_by_hour jsonb not null default '{}'::jsonb;
update job_energy set stale = true;
