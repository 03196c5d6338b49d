-- Per-GPU per-hour sums of the minute rollups, kept by the rollup task in the same transaction as the
-- minutes. A week of 64 GPUs is 645,000 minutes but 10,752 hours: week-long charts and coverage read
-- the hours, and the minutes only at the window's edges and in hours with missing minutes.
create table gpu_hour (
    node_id int not null,
    gpu_index int not null,
    hour timestamptz not null,
    -- Minutes with data (covered_s > 0) and the last of them.
    minutes int not null,
    last_minute timestamptz,
    samples bigint not null,
    covered_s double precision not null,
    energy_j double precision not null,
    -- Utilisation weighted by covered time, over the minutes that report it.
    util_covered double precision not null default 0,
    util_covered_s double precision not null default 0,
    primary key (node_id, gpu_index, hour)
);

select create_hypertable('gpu_hour', 'hour', chunk_time_interval => interval '365 days');

insert into gpu_hour (node_id, gpu_index, hour, minutes, last_minute, samples, covered_s, energy_j,
    util_covered, util_covered_s)
select node_id, gpu_index, time_bucket('1 hour', minute),
    count(*) filter (where covered_s > 0), max(minute) filter (where covered_s > 0),
    sum(samples), sum(covered_s), sum(energy_j),
    coalesce(sum(util_avg_pct * covered_s), 0),
    coalesce(sum(covered_s) filter (where util_avg_pct is not null), 0)
from gpu_minute
group by 1, 2, 3;

-- Running jobs, for the task that refreshes their stored energy.
create index jobs_running_idx on jobs (start_time) where end_time is null;
