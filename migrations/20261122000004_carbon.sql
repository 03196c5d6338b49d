-- Carbon and cost: a site's static grid carbon intensity and electricity price, and an optional hourly
-- carbon-intensity series (e.g. from the grid operator) that wins over the static value where it has one.
alter table sites
    add column carbon_g_per_kwh double precision check (carbon_g_per_kwh >= 0 and carbon_g_per_kwh <= 5000),
    add column price_per_kwh double precision check (price_per_kwh >= 0 and price_per_kwh <= 100),
    add column currency text not null default 'EUR' check (currency ~ '^[A-Z]{3}$');

create table carbon_intensity (
    site_id int not null references sites (id),
    time timestamptz not null,
    g_per_kwh double precision not null check (g_per_kwh >= 0 and g_per_kwh <= 5000),
    primary key (site_id, time)
);

-- Each job's IT energy per UTC hour, kept with its energy summary: statements charge each hour its
-- carbon intensity and tell low-PUE hours from others without recomputing the job.
alter table job_energy add column it_j_by_hour jsonb not null default '{}'::jsonb;
