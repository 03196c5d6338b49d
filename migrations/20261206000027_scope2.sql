-- Scope 2 as reporting rules ask (issue 35, item 4; the GHG Protocol's Scope 2 guidance): beside the
-- location-based emissions (the grid's intensity, hourly or static), market-based ones where an admin
-- records a contractual instrument's factor for a period (a power purchase agreement, certificates, a
-- supplier's mix); hours no instrument covers take the location-based factor, and the share covered is
-- said. And embodied emissions per GPU-hour of a GPU model, from a figure the admin sets with its
-- source: shown apart, never added to the others.
create table site_contracts (
    site_id int not null references sites(id) on delete cascade,
    valid_from timestamptz not null,
    valid_to timestamptz not null,
    g_per_kwh double precision not null,
    instrument text not null,
    primary key (site_id, valid_from),
    check (valid_to > valid_from),
    check (g_per_kwh >= 0 and g_per_kwh <= 2000),
    check (length(instrument) between 1 and 200)
);

create table gpu_model_embodied (
    model text primary key check (length(model) between 1 and 200),
    kg_per_gpu_hour double precision not null check (kg_per_gpu_hour >= 0 and kg_per_gpu_hour <= 100),
    source text not null check (length(source) between 1 and 500)
);
