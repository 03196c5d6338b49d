-- Platform schema: sites, nodes, GPUs, jobs, raw GPU samples and their per-minute rollups.
--
-- Why raw samples are blocks, not rows: 100 ms sampling is 864,000 samples per GPU per day, and a
-- PostgreSQL row costs ~90 bytes before it holds any data. One row per node per accepted batch holds all
-- of that batch's samples, delta-encoded (server/src/codec.rs), which keeps a sample near 10 bytes on the
-- Apache build of TimescaleDB (no native compression there). Raw blocks are dropped after a retention
-- period by drop_chunks; per-minute rollups are kept forever and carry everything job energy needs.
create extension if not exists timescaledb;

create table sites (
    id serial primary key,
    name text not null unique,
    timezone text not null,
    created_at timestamptz not null default now()
);

create table nodes (
    id serial primary key,
    name text not null unique,
    site_id int not null references sites (id),
    -- sha256 of the bearer token: the token itself is shown once and never stored.
    token_sha256 bytea not null unique,
    last_seen timestamptz,
    dropped_samples_total bigint not null default 0,
    created_at timestamptz not null default now()
);

create table gpus (
    node_id int not null references nodes (id),
    gpu_index int not null,
    uuid text not null,
    model text not null,
    default_power_limit_w double precision,
    updated_at timestamptz not null default now(),
    primary key (node_id, gpu_index)
);

create table jobs (
    id text primary key,
    user_name text not null,
    name text not null,
    site_id int not null references sites (id),
    start_time timestamptz not null,
    end_time timestamptz,
    tags jsonb not null default '{}'::jsonb,
    created_at timestamptz not null default now(),
    check (end_time is null or end_time >= start_time)
);

create index jobs_start_idx on jobs (start_time desc);
create index jobs_user_start_idx on jobs (user_name, start_time desc);
create index jobs_tags_idx on jobs using gin (tags jsonb_path_ops);

create table job_allocations (
    job_id text not null references jobs (id) on delete cascade,
    node_id int not null references nodes (id),
    gpu_index int not null,
    primary key (job_id, node_id, gpu_index)
);

create index job_allocations_node_idx on job_allocations (node_id);

-- One block of raw samples of one node. t_start/t_end bound the samples inside; a block spans at most
-- ten minutes (enforced at ingest) so overlap searches have a bounded range.
create table gpu_raw (
    node_id int not null,
    t_start timestamptz not null,
    t_end timestamptz not null,
    n_samples int not null,
    data bytea not null
);

-- The data is already dense varints: compressing it again in TOAST would spend CPU for little.
alter table gpu_raw alter column data set storage external;

select create_hypertable('gpu_raw', 't_start', chunk_time_interval => interval '1 day');

create index gpu_raw_node_time_idx on gpu_raw (node_id, t_start desc);

-- Per-GPU per-minute rollups, maintained by the server's rollup task from raw blocks.
create table gpu_minute (
    node_id int not null,
    gpu_index int not null,
    minute timestamptz not null,
    samples int not null,
    covered_s double precision not null,
    counter_s double precision not null,
    energy_j double precision not null,
    power_min_w real not null,
    power_max_w real not null,
    -- The limit most of the minute's samples reported, and how many did.
    power_limit_w real,
    power_limit_samples int not null default 0,
    util_avg_pct real,
    mem_max_mib real,
    temp_max_c real,
    sm_avg_mhz real,
    primary key (node_id, gpu_index, minute)
);

select create_hypertable('gpu_minute', 'minute', chunk_time_interval => interval '30 days');

-- Time ranges of raw data accepted but not yet rolled up, written in the same transaction as the raw
-- block. The rollup task consumes them; readers use raw samples for those ranges.
create table rollup_pending (
    node_id int not null,
    t_from timestamptz not null,
    t_to timestamptz not null
);

create index rollup_pending_node_idx on rollup_pending (node_id, t_from);

-- What the server's background tasks did last, for /readyz and the pages.
create table maintenance_runs (
    task text primary key,
    last_run timestamptz not null,
    detail jsonb not null default '{}'::jsonb
);
