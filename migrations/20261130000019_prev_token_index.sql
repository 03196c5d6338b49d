-- A collector's token is looked up by `token_sha256 = $1 or prev_token_sha256 = $1` (a replaced token
-- in its grace, migration 0015). Without an index on the second column the `or` read every node: at
-- 6,250 nodes 3.3 ms of PostgreSQL's CPU a lookup, each node's every 5 s (the servers' token cache).
-- With it, two index probes (0.08 ms). Partial: only tokens in their grace have one.
create index nodes_prev_token_idx on nodes (prev_token_sha256) where prev_token_sha256 is not null;
create index meters_prev_token_idx on meters (prev_token_sha256) where prev_token_sha256 is not null;
