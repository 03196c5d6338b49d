-- Samples a collector dropped (its spool full through a long outage), by GPU and time range, as it
-- reported them with a later batch. A range sent again (its batch's answer was lost) or widened (the
-- collector merged ranges to stay within its bound) updates the one stored: never counted twice.
create table dropped_ranges (
    node_id int not null references nodes (id) on delete cascade,
    gpu_index int not null,
    t_from timestamptz not null,
    t_to timestamptz not null,
    samples bigint not null,
    reported_at timestamptz not null default now(),
    primary key (node_id, gpu_index, t_from),
    check (t_to >= t_from and samples >= 0)
);
