-- Facility meters and their readings, for measured PUE = total facility power / IT power.
--
-- Readings are few (one per meter every few minutes), so they are plain rows in a hypertable keyed by
-- (meter, time): re-sending a reading changes nothing. A reading carries power (kW), or cumulative energy
-- counters (kWh), or only a PUE (building-management exports that do not give IT power). Each reading's
-- PUE is derived at query time (server/src/db/facility.rs), where the time range bounds the work.
alter table sites add column fallback_pue double precision not null default 1.58
    check (fallback_pue >= 1.0 and fallback_pue <= 10.0);

create table meters (
    id serial primary key,
    name text not null unique,
    site_id int not null references sites (id),
    token_sha256 bytea not null unique,
    -- ISO/IEC 30134-2 measurement category: PUE1 (UPS output), PUE2 (PDU output), PUE3 (IT equipment input).
    category text not null default 'PUE1' check (category in ('PUE1', 'PUE2', 'PUE3')),
    last_seen timestamptz,
    created_at timestamptz not null default now()
);

create table facility_readings (
    meter_id int not null references meters (id),
    time timestamptz not null,
    it_kw double precision,
    total_kw double precision,
    it_kwh double precision,
    total_kwh double precision,
    pue double precision,
    primary key (meter_id, time),
    check ((it_kw is null) = (total_kw is null)),
    check ((it_kwh is null) = (total_kwh is null)),
    check (it_kw is not null or it_kwh is not null or pue is not null)
);

select create_hypertable('facility_readings', 'time', chunk_time_interval => interval '90 days');
