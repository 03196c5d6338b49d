-- The jobs list without reading every job, kept by the same triggers:
-- - its totals: count, summaries, GPU-hours, IT and facility energy per site, owner and state (running
--   or finished). A join of 100,000 jobs with their summaries on every unfiltered page took ~100 ms;
--   these rows are a few per user.
-- - its order by energy, at any depth, from one index on jobs: each job carries its summary's IT
--   energy (null without one: listed last). Sorting a left join of 100,000 jobs with their summaries
--   took 0.1-0.2 s on every page sorted by energy; walking this index to offset 50,000 reads 50,000
--   index entries, and a Next link's cursor 51.
--
-- Triggers add rows of changes (never update a row: no lock on a shared row, however many jobs change
-- at once); the maintenance task folds them into one row per key (`db::jobs::fold_totals`). A reader
-- sums the rows of its keys, folded or not. Amounts are numeric: a summary's figures are added when it
-- is written and subtracted, as the same numeric, when it is replaced, so they cancel exactly.
create table job_totals (
    site_id int not null,
    user_name text not null,
    finished boolean not null,
    jobs bigint not null default 0,
    summaries bigint not null default 0,
    gpu_hours numeric not null default 0,
    it_energy_kwh numeric not null default 0,
    facility_energy_kwh numeric not null default 0
);
create index job_totals_user_idx on job_totals (user_name);

alter table jobs add column it_energy_kwh double precision;
update jobs j set it_energy_kwh = e.it_energy_kwh from job_energy e where e.job_id = j.id;
create index jobs_energy_idx on jobs (it_energy_kwh desc nulls last, id desc);
drop index job_energy_it_idx;

-- Jobs inserted or deleted count +1 or -1 with their summaries (a job is inserted before its summary;
-- a deleted job's summary is subtracted before the delete cascades to it: `job_totals_job_deleted`).
-- A job whose key changes (site, owner, or whether it has ended) moves with its summary.
create function job_totals_jobs() returns trigger language plpgsql as $$
begin
    if tg_op = 'INSERT' then
        insert into job_totals (site_id, user_name, finished, jobs)
        select site_id, user_name, end_time is not null, count(*)
        from new_rows group by 1, 2, 3;
    elsif tg_op = 'DELETE' then
        insert into job_totals (site_id, user_name, finished, jobs)
        select site_id, user_name, end_time is not null, -count(*)
        from old_rows group by 1, 2, 3;
    else
        -- Moved jobs: their summaries as they are now, out of the old key and into the new one.
        insert into job_totals (site_id, user_name, finished, jobs, summaries, gpu_hours,
            it_energy_kwh, facility_energy_kwh)
        select k.site_id, k.user_name, k.finished, k.sign * count(*), k.sign * count(e.job_id),
            k.sign * coalesce(sum(e.gpu_hours::numeric), 0),
            k.sign * coalesce(sum(e.it_energy_kwh::numeric), 0),
            k.sign * coalesce(sum(e.facility_energy_kwh::numeric), 0)
        from old_rows o
        join new_rows n on n.id = o.id
        cross join lateral (values
            (-1, o.site_id, o.user_name, o.end_time is not null),
            (1, n.site_id, n.user_name, n.end_time is not null)) as k(sign, site_id, user_name, finished)
        left join job_energy e on e.job_id = o.id
        where (o.site_id, o.user_name, o.end_time is null)
            is distinct from (n.site_id, n.user_name, n.end_time is null)
        group by k.sign, k.site_id, k.user_name, k.finished;
    end if;
    return null;
end
$$;

create trigger job_totals_jobs_insert after insert on jobs
    referencing new table as new_rows for each statement execute function job_totals_jobs();
create trigger job_totals_jobs_update after update on jobs
    referencing old table as old_rows new table as new_rows
    for each statement execute function job_totals_jobs();
create trigger job_totals_jobs_delete after delete on jobs
    referencing old table as old_rows for each statement execute function job_totals_jobs();

-- Before a job's row goes (and its summary with it, by cascade, when the job is no longer there to
-- name its key): its summary out of the totals.
create function job_totals_job_deleted() returns trigger language plpgsql as $$
begin
    insert into job_totals (site_id, user_name, finished, summaries, gpu_hours, it_energy_kwh,
        facility_energy_kwh)
    select old.site_id, old.user_name, old.end_time is not null, -1,
        -e.gpu_hours::numeric, -e.it_energy_kwh::numeric, -e.facility_energy_kwh::numeric
    from job_energy e
    where e.job_id = old.id;
    return old;
end
$$;
create trigger job_totals_job_deleted before delete on jobs
    for each row execute function job_totals_job_deleted();

-- Before a summary's figures change (or it goes), its job's row is locked, as for the update of the
-- job's copy of its energy below: a job changing its key at the same time (ending, say) waits for this
-- transaction or this one for it, so each sees the other's figures and neither moves figures the other
-- has replaced; two summaries of one job written at once wait for each other here rather than both
-- holding a shared lock and waiting on each other to update the job. The lock is taken before the
-- summary's row, in the order a job's registration takes them (its job, then summaries), so the two
-- never wait on each other in a circle. Marking summaries stale changes no figure and locks nothing.
create function job_totals_energy_lock() returns trigger language plpgsql as $$
begin
    if tg_op = 'UPDATE' and (old.gpu_hours, old.it_energy_kwh, old.facility_energy_kwh)
            is not distinct from (new.gpu_hours, new.it_energy_kwh, new.facility_energy_kwh) then
        return new;
    end if;
    perform 1 from jobs where id = coalesce(new.job_id, old.job_id) for no key update;
    return coalesce(new, old);
end
$$;
create trigger job_totals_energy_lock before insert or update or delete on job_energy
    for each row execute function job_totals_energy_lock();

-- Summaries written, replaced or deleted: the old figures out, the new in, under their job's key, and
-- the job's copy of its energy set (the job rows are locked already). (Updates that change no figure,
-- such as marking stale, add nothing: the job of a replaced summary is found by a hash join of the old
-- and new rows, not a search per row.)
create function job_totals_energy() returns trigger language plpgsql as $$
begin
    if tg_op = 'INSERT' then
        insert into job_totals (site_id, user_name, finished, summaries, gpu_hours, it_energy_kwh,
            facility_energy_kwh)
        select j.site_id, j.user_name, j.end_time is not null, count(*),
            sum(n.gpu_hours::numeric), sum(n.it_energy_kwh::numeric),
            sum(n.facility_energy_kwh::numeric)
        from new_rows n
        join jobs j on j.id = n.job_id
        group by 1, 2, 3;
        update jobs j set it_energy_kwh = n.it_energy_kwh
        from new_rows n
        where j.id = n.job_id and j.it_energy_kwh is distinct from n.it_energy_kwh;
    elsif tg_op = 'DELETE' then
        -- A summary deleted with its job was subtracted before (the job is gone: no row here).
        insert into job_totals (site_id, user_name, finished, summaries, gpu_hours, it_energy_kwh,
            facility_energy_kwh)
        select j.site_id, j.user_name, j.end_time is not null, -count(*),
            -sum(o.gpu_hours::numeric), -sum(o.it_energy_kwh::numeric),
            -sum(o.facility_energy_kwh::numeric)
        from old_rows o
        join jobs j on j.id = o.job_id
        group by 1, 2, 3;
        update jobs j set it_energy_kwh = null
        from old_rows o
        where j.id = o.job_id and j.it_energy_kwh is not null;
    else
        insert into job_totals (site_id, user_name, finished, gpu_hours, it_energy_kwh,
            facility_energy_kwh)
        select j.site_id, j.user_name, j.end_time is not null,
            sum(n.gpu_hours::numeric - o.gpu_hours::numeric),
            sum(n.it_energy_kwh::numeric - o.it_energy_kwh::numeric),
            sum(n.facility_energy_kwh::numeric - o.facility_energy_kwh::numeric)
        from old_rows o
        join new_rows n on n.job_id = o.job_id
        join jobs j on j.id = n.job_id
        where (n.gpu_hours, n.it_energy_kwh, n.facility_energy_kwh)
            is distinct from (o.gpu_hours, o.it_energy_kwh, o.facility_energy_kwh)
        group by 1, 2, 3;
        update jobs j set it_energy_kwh = n.it_energy_kwh
        from new_rows n
        where j.id = n.job_id and j.it_energy_kwh is distinct from n.it_energy_kwh;
    end if;
    return null;
end
$$;

create trigger job_totals_energy_insert after insert on job_energy
    referencing new table as new_rows for each statement execute function job_totals_energy();
create trigger job_totals_energy_update after update on job_energy
    referencing old table as old_rows new table as new_rows
    for each statement execute function job_totals_energy();
create trigger job_totals_energy_delete after delete on job_energy
    referencing old table as old_rows for each statement execute function job_totals_energy();

-- The jobs there are.
insert into job_totals (site_id, user_name, finished, jobs, summaries, gpu_hours, it_energy_kwh,
    facility_energy_kwh)
select j.site_id, j.user_name, j.end_time is not null, count(*), count(e.job_id),
    coalesce(sum(e.gpu_hours::numeric), 0),
    coalesce(sum(e.it_energy_kwh::numeric), 0), coalesce(sum(e.facility_energy_kwh::numeric), 0)
from jobs j
left join job_energy e on e.job_id = j.id
group by 1, 2, 3;
