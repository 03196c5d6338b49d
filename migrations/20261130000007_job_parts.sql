-- Multi-node jobs. Each node's prolog registers its part of a job with its own clock, so the parts of one
-- job id arrive with starts a few seconds apart; the job starts at the earliest part's start and ends when
-- its last part ends. A part records which node said what, so a node's epilog ends only its own part and
-- a node token can never end, retag or reassign another node's part.
create table job_parts (
    job_id text not null references jobs (id),
    node_id int not null references nodes (id),
    start_time timestamptz not null,
    end_time timestamptz,
    primary key (job_id, node_id),
    check (end_time is null or end_time >= start_time)
);

-- GPUs a job held where the scheduler's record cannot say which (sacct on a shared node): never
-- guessed, so not charged, and said so on the job's page. [{"node": "gpu03", "gpus": 2}, ...]
alter table jobs add column unknown_gpus jsonb not null default '[]'::jsonb;
