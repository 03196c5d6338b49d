-- The rollup task takes the oldest hour of pending ranges of every node first, and the lag is the
-- oldest range: both start from the earliest `t_from`, found here instead of by a scan of the backlog.
create index rollup_pending_from_idx on rollup_pending (t_from);
