-- Each workload's power-cap comparison at the default baseline and slowdown budget, per scope (one
-- owner, or '' for everyone's jobs): a job page's advice line reads it instead of comparing up to 2,000
-- jobs. It is used while no finished job of its tag has a summary computed after it (nor a stale or
-- missing one); `body` is null where the jobs cannot be compared.
create table cap_comparisons (
    tag text not null,
    owner text not null default '',
    computed_at timestamptz not null default now(),
    body jsonb,
    primary key (tag, owner)
);
