-- Per-node per-hour sums of the GPUs' hourly sums, kept by the rollup in the same statement order and
-- transaction as `gpu_hour`. A 90-day chart of a 64-GPU job draws a line per node: from `gpu_hour`
-- that is 138,240 rows to sum on every request (~90 ms of a 2-core machine), from here 17,280.
-- `gpu_mask` says which GPUs the sums hold (bit i: GPU i reported in the hour; bit 63: some GPU with
-- an index above 62): a job's chart uses a row only when every GPU in it is one of the job's, and reads
-- that hour's GPUs from `gpu_hour` otherwise.
create table node_hour (
    node_id int not null,
    hour timestamptz not null,
    gpu_mask bigint not null,
    last_minute timestamptz,
    covered_s double precision not null,
    energy_j double precision not null,
    util_covered double precision not null,
    util_covered_s double precision not null,
    primary key (node_id, hour)
);

select create_hypertable('node_hour', 'hour', chunk_time_interval => interval '365 days');

-- A GPU's bit in `gpu_mask`.
create function gpu_bit(gpu_index int) returns int8
language sql immutable parallel safe
as $$ select case when gpu_index < 63 then 1::int8 << gpu_index else (-9223372036854775807 - 1)::int8 end $$;

-- A node's sums of each hour from its GPUs' hours: what `node_hour` keeps, read by the backfill below
-- and by the rollup's upsert (`db::rollups::refresh_hours`, which asks for one node's hours: conditions
-- on the grouped columns reach `gpu_hour`'s index).
create view node_hour_of_gpus as
select node_id, hour,
    coalesce(bit_or(gpu_bit(gpu_index)) filter (where minutes > 0), 0) as gpu_mask,
    max(last_minute) filter (where minutes > 0) as last_minute,
    coalesce(sum(covered_s) filter (where minutes > 0), 0) as covered_s,
    coalesce(sum(energy_j) filter (where minutes > 0), 0) as energy_j,
    coalesce(sum(util_covered) filter (where minutes > 0), 0) as util_covered,
    coalesce(sum(util_covered_s) filter (where minutes > 0), 0) as util_covered_s
from gpu_hour
group by node_id, hour;

insert into node_hour (node_id, hour, gpu_mask, last_minute, covered_s, energy_j, util_covered,
    util_covered_s)
select node_id, hour, gpu_mask, last_minute, covered_s, energy_j, util_covered, util_covered_s
from node_hour_of_gpus;
