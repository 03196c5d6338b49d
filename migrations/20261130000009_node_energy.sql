-- Whole-node energy: the CPU package and DRAM counters of Linux powercap (RAPL), as collectors read them.
-- A row per (node, zone, reading): the raw counter and where it wraps, unwrapped between consecutive
-- readings when energy is integrated. Collectors read every few seconds, so a node adds well under one
-- row per second; the counter makes energy exact whatever the spacing.
create table node_energy (
    node_id int not null references nodes (id),
    zone text not null,
    kind text not null check (kind in ('cpu', 'dram', 'psys')),
    t timestamptz not null,
    energy_uj bigint not null check (energy_uj >= 0),
    max_uj bigint not null check (max_uj > 0),
    primary key (node_id, zone, t)
);

select create_hypertable('node_energy', 't', chunk_time_interval => interval '7 days');

-- The node's logical CPUs (what a job's `cpus` are a share of), as its collector last said.
alter table nodes add column cpus int check (cpus is null or cpus > 0);

-- The CPUs a job holds on a node (its prolog's SLURM_CPUS_ON_NODE): its share of the node's CPU and DRAM
-- energy. A job with GPUs on a node but no row here shares equally with the node's other such jobs.
create table job_node_cpus (
    job_id text not null references jobs (id) on delete cascade,
    node_id int not null references nodes (id),
    cpus int not null check (cpus > 0),
    primary key (job_id, node_id)
);

-- A job holding a MIG instance of a GPU rather than the whole GPU: the instance's profile (`3g.40gb`)
-- and its compute slices of the GPU's seven; the job is charged that fraction of the GPU's energy.
alter table job_allocations
    add column mig text,
    add column mig_slices smallint check (mig_slices is null or mig_slices between 1 and 7);

-- Each counter's energy per minute, cut exactly at minute boundaries from the raw readings: what long
-- jobs read for their whole minutes, and what stays once raw readings are past the retention period.
create table node_energy_minute (
    node_id int not null references nodes (id),
    zone text not null,
    kind text not null check (kind in ('cpu', 'dram', 'psys')),
    minute timestamptz not null,
    energy_j double precision not null,
    primary key (node_id, zone, minute)
);

select create_hypertable('node_energy_minute', 'minute', chunk_time_interval => interval '30 days');

-- How far each node's readings are rolled up; readings arriving before it move it back.
create table node_energy_rollup (
    node_id int primary key references nodes (id),
    rolled_to timestamptz not null
);
