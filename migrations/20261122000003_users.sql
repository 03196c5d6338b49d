-- People, their sessions and API tokens; training progress; and the per-job energy summary that lets the
-- jobs list sort and total 100,000 jobs without recomputing each one.

-- A user's name is the scheduler's user name: a researcher sees the jobs whose jobs.user_name is theirs.
create table users (
    id serial primary key,
    name text not null unique,
    role text not null check (role in ('researcher', 'staff', 'admin')),
    -- Argon2id in PHC string form; null: this user signs in only through the trusted proxy header.
    password_hash text,
    disabled boolean not null default false,
    created_at timestamptz not null default now()
);

-- Server-side sessions: the cookie holds a random token, the table its sha256.
create table sessions (
    token_sha256 bytea primary key,
    user_id int not null references users (id) on delete cascade,
    -- Forms carry this token; a POST whose token differs is refused (CSRF).
    csrf_token text not null,
    created_at timestamptz not null default now(),
    expires_at timestamptz not null
);

create index sessions_user_idx on sessions (user_id);
create index sessions_expiry_idx on sessions (expires_at);

-- Bearer tokens of users for the JSON API (scripts, the progress reporter); shown once, stored hashed.
create table api_tokens (
    id serial primary key,
    user_id int not null references users (id) on delete cascade,
    label text not null,
    token_sha256 bytea not null unique,
    created_at timestamptz not null default now(),
    last_used_at timestamptz
);

create index api_tokens_user_idx on api_tokens (user_id);

-- What a training script reports: one row per step (a re-sent step replaces the earlier one).
create table job_progress (
    job_id text not null references jobs (id) on delete cascade,
    step bigint not null,
    time timestamptz not null,
    metrics jsonb not null,
    primary key (job_id, step)
);

-- A job's energy as its page computed it last. The list sorts and totals on these columns and shows
-- `summary` (the job's JSON view). `stale`: raw data arrived for the job's GPUs and time after the
-- summary was computed (set by the rollup task); the refresher recomputes stale, running and missing rows.
create table job_energy (
    job_id text primary key references jobs (id) on delete cascade,
    computed_at timestamptz not null,
    stale boolean not null default false,
    gpu_count int not null,
    gpu_hours double precision not null,
    it_energy_kwh double precision not null,
    facility_energy_kwh double precision not null,
    power_cap_w double precision,
    summary jsonb not null
);

create index job_energy_it_idx on job_energy (it_energy_kwh desc);
create index job_energy_refresh_idx on job_energy (computed_at) where stale;
