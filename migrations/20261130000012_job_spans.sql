-- The jobs overlapping a time window, by their span. Which jobs shared a node's CPUs and DRAM during a
-- job (node energy) was found by scanning every job that started before the window's end, ~44 ms a job
-- at 100,000 jobs, and the other jobs holding a job's GPUs by every job that ever held them, 120-175 ms;
-- with this index, the handful that overlap: ~0.5 and 3-4 ms. '[]': a job of no length still holds its
-- instant (the queries' own conditions decide).
create index jobs_span_idx on jobs using gist (tstzrange(start_time, end_time, '[]'));
