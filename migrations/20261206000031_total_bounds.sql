-- The jobs list's totals get their bounds (issue 35): each summary keeps its bounds in columns, and
-- the kept totals add them as they add the energy (jobs' bounds add: nothing is assumed to cancel).
-- `bounded` counts the summaries that carry bounds; totals are bounded only where every summary is.
alter table job_energy
    add column it_low double precision,
    add column it_high double precision,
    add column facility_low double precision,
    add column facility_high double precision;

update job_energy set
    it_low = (summary->>'it_energy_kwh_low')::float8,
    it_high = (summary->>'it_energy_kwh_high')::float8,
    facility_low = (summary->>'facility_energy_kwh_low')::float8,
    facility_high = (summary->>'facility_energy_kwh_high')::float8;

alter table job_totals
    add column bounded bigint not null default 0,
    add column it_low numeric not null default 0,
    add column it_high numeric not null default 0,
    add column facility_low numeric not null default 0,
    add column facility_high numeric not null default 0;

create or replace function job_totals_jobs() returns trigger language plpgsql as $$
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
            it_energy_kwh, facility_energy_kwh, bounded, it_low, it_high, facility_low, facility_high)
        select k.site_id, k.user_name, k.finished, k.sign * count(*), k.sign * count(e.job_id),
            k.sign * coalesce(sum(e.gpu_hours::numeric), 0),
            k.sign * coalesce(sum(e.it_energy_kwh::numeric), 0),
            k.sign * coalesce(sum(e.facility_energy_kwh::numeric), 0),
            k.sign * count(e.it_low),
            k.sign * coalesce(sum(e.it_low::numeric), 0),
            k.sign * coalesce(sum(e.it_high::numeric), 0),
            k.sign * coalesce(sum(e.facility_low::numeric), 0),
            k.sign * coalesce(sum(e.facility_high::numeric), 0)
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

create or replace function job_totals_job_deleted() returns trigger language plpgsql as $$
begin
    insert into job_totals (site_id, user_name, finished, summaries, gpu_hours, it_energy_kwh,
        facility_energy_kwh, bounded, it_low, it_high, facility_low, facility_high)
    select old.site_id, old.user_name, old.end_time is not null, -1,
        -e.gpu_hours::numeric, -e.it_energy_kwh::numeric, -e.facility_energy_kwh::numeric,
        -(e.it_low is not null)::int, -coalesce(e.it_low::numeric, 0),
        -coalesce(e.it_high::numeric, 0), -coalesce(e.facility_low::numeric, 0),
        -coalesce(e.facility_high::numeric, 0)
    from job_energy e
    where e.job_id = old.id;
    return old;
end
$$;

create or replace function job_totals_energy_lock() returns trigger language plpgsql as $$
begin
    if tg_op = 'UPDATE' and (old.gpu_hours, old.it_energy_kwh, old.facility_energy_kwh, old.it_low,
            old.it_high, old.facility_low, old.facility_high)
            is not distinct from (new.gpu_hours, new.it_energy_kwh, new.facility_energy_kwh,
            new.it_low, new.it_high, new.facility_low, new.facility_high) then
        return new;
    end if;
    perform 1 from jobs where id = coalesce(new.job_id, old.job_id) for no key update;
    return coalesce(new, old);
end
$$;

create or replace function job_totals_energy() returns trigger language plpgsql as $$
begin
    if tg_op = 'INSERT' then
        insert into job_totals (site_id, user_name, finished, summaries, gpu_hours, it_energy_kwh,
            facility_energy_kwh, bounded, it_low, it_high, facility_low, facility_high)
        select j.site_id, j.user_name, j.end_time is not null, count(*),
            sum(n.gpu_hours::numeric), sum(n.it_energy_kwh::numeric),
            sum(n.facility_energy_kwh::numeric), count(n.it_low),
            coalesce(sum(n.it_low::numeric), 0), coalesce(sum(n.it_high::numeric), 0),
            coalesce(sum(n.facility_low::numeric), 0), coalesce(sum(n.facility_high::numeric), 0)
        from new_rows n
        join jobs j on j.id = n.job_id
        group by 1, 2, 3;
        update jobs j set it_energy_kwh = n.it_energy_kwh
        from new_rows n
        where j.id = n.job_id and j.it_energy_kwh is distinct from n.it_energy_kwh;
    elsif tg_op = 'DELETE' then
        -- A summary deleted with its job was subtracted before (the job is gone: no row here).
        insert into job_totals (site_id, user_name, finished, summaries, gpu_hours, it_energy_kwh,
            facility_energy_kwh, bounded, it_low, it_high, facility_low, facility_high)
        select j.site_id, j.user_name, j.end_time is not null, -count(*),
            -sum(o.gpu_hours::numeric), -sum(o.it_energy_kwh::numeric),
            -sum(o.facility_energy_kwh::numeric), -count(o.it_low),
            -coalesce(sum(o.it_low::numeric), 0), -coalesce(sum(o.it_high::numeric), 0),
            -coalesce(sum(o.facility_low::numeric), 0), -coalesce(sum(o.facility_high::numeric), 0)
        from old_rows o
        join jobs j on j.id = o.job_id
        group by 1, 2, 3;
        update jobs j set it_energy_kwh = null
        from old_rows o
        where j.id = o.job_id and j.it_energy_kwh is not null;
    else
        insert into job_totals (site_id, user_name, finished, gpu_hours, it_energy_kwh,
            facility_energy_kwh, bounded, it_low, it_high, facility_low, facility_high)
        select j.site_id, j.user_name, j.end_time is not null,
            sum(n.gpu_hours::numeric - o.gpu_hours::numeric),
            sum(n.it_energy_kwh::numeric - o.it_energy_kwh::numeric),
            sum(n.facility_energy_kwh::numeric - o.facility_energy_kwh::numeric),
            count(n.it_low) - count(o.it_low),
            sum(coalesce(n.it_low::numeric, 0) - coalesce(o.it_low::numeric, 0)),
            sum(coalesce(n.it_high::numeric, 0) - coalesce(o.it_high::numeric, 0)),
            sum(coalesce(n.facility_low::numeric, 0) - coalesce(o.facility_low::numeric, 0)),
            sum(coalesce(n.facility_high::numeric, 0) - coalesce(o.facility_high::numeric, 0))
        from old_rows o
        join new_rows n on n.job_id = o.job_id
        join jobs j on j.id = n.job_id
        where (n.gpu_hours, n.it_energy_kwh, n.facility_energy_kwh, n.it_low, n.it_high,
                n.facility_low, n.facility_high)
            is distinct from (o.gpu_hours, o.it_energy_kwh, o.facility_energy_kwh, o.it_low,
                o.it_high, o.facility_low, o.facility_high)
        group by 1, 2, 3;
        update jobs j set it_energy_kwh = n.it_energy_kwh
        from new_rows n
        where j.id = n.job_id and j.it_energy_kwh is distinct from n.it_energy_kwh;
    end if;
    return null;
end
$$;

-- The totals, counted again with their bounds.
delete from job_totals;
insert into job_totals (site_id, user_name, finished, jobs, summaries, gpu_hours, it_energy_kwh,
    facility_energy_kwh, bounded, it_low, it_high, facility_low, facility_high)
select j.site_id, j.user_name, j.end_time is not null, count(*), count(e.job_id),
    coalesce(sum(e.gpu_hours::numeric), 0),
    coalesce(sum(e.it_energy_kwh::numeric), 0), coalesce(sum(e.facility_energy_kwh::numeric), 0),
    count(e.it_low), coalesce(sum(e.it_low::numeric), 0), coalesce(sum(e.it_high::numeric), 0),
    coalesce(sum(e.facility_low::numeric), 0), coalesce(sum(e.facility_high::numeric), 0)
from jobs j
left join job_energy e on e.job_id = j.id
group by 1, 2, 3;
