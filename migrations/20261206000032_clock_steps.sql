-- Steps of a node's wall clock its collector slewed over (issue 32, item 4): how many it reported
-- with its batches, and when the last batch that reported one came.
alter table nodes
    add column clock_steps bigint not null default 0,
    add column clock_stepped_at timestamptz;
