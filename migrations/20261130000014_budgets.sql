-- Projects' monthly budgets: a project is the `project` tag of its jobs. A budget holds IT energy and/or
-- CO2e per calendar month (UTC); crossing 80 % and 100 % of either posts the project's webhook once.
create table project_budgets (
    project text primary key,
    kwh_per_month double precision check (kwh_per_month > 0 and kwh_per_month <= 1e12),
    co2e_kg_per_month double precision check (co2e_kg_per_month > 0 and co2e_kg_per_month <= 1e12),
    webhook_url text,
    updated_at timestamptz not null default now(),
    check (kwh_per_month is not null or co2e_kg_per_month is not null)
);

-- One row per crossing: written when the crossing is seen (so the banner and the history never depend on
-- the receiver), delivered when the receiver answers 2xx; undelivered ones are retried each run.
create table budget_alerts (
    project text not null references project_budgets (project) on delete cascade,
    month date not null,
    kind text not null check (kind in ('energy', 'co2e')),
    threshold_pct int not null check (threshold_pct in (80, 100)),
    used double precision not null,
    budget double precision not null,
    crossed_at timestamptz not null default now(),
    delivered_at timestamptz,
    attempts int not null default 0,
    last_error text,
    primary key (project, month, kind, threshold_pct)
);
