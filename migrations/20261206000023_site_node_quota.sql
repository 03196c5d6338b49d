-- How many nodes a site may hold for its write token to register one more (issue 33, N3): one token
-- once registered 5,000 nodes from one write. The admin changes it (PUT /api/v1/sites/{site}) and
-- registers nodes past it.
alter table sites add column node_quota int not null default 1000 check (node_quota >= 0);
