-- Settled raw samples: once an hour has ended (and WATTLAS_COMPACT_AFTER_S more), a node's live blocks of
-- that hour (one per batch, ~12 bytes a sample) are rewritten as one block per GPU per hour in the packed
-- format (codec format 2, ~4 bytes a sample) and deleted, in one transaction under the node's ingest lock.
-- Samples that come late for a settled hour are stored as live blocks and folded in by the next run.
-- t_start is the codec's base (the first sample); readers search live blocks by their five-minute window
-- and settled ones by hour.
create table gpu_settled (
    node_id int not null,
    gpu_index int not null,
    hour timestamptz not null,
    t_start timestamptz not null,
    t_end timestamptz not null,
    n_samples int not null,
    data bytea not null,
    primary key (node_id, hour, gpu_index)
);

-- Packed blocks are near their entropy: TOAST would try to compress them for nothing.
alter table gpu_settled alter column data set storage external;

select create_hypertable('gpu_settled', 'hour', chunk_time_interval => interval '1 day');
