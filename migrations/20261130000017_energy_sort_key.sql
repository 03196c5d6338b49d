-- The jobs list sorted by energy, at any depth, from one index on jobs: each job carries its summary's
-- IT energy (null without one: listed last), kept by the summary's triggers in the same transaction.
-- Sorting a left join of 100,000 jobs with their summaries took 0.1-0.2 s on every page sorted by
-- energy; walking this index to offset 50,000 reads 50,000 index entries, and a Next link's cursor 51.
alter table jobs add column it_energy_kwh double precision;
update jobs j set it_energy_kwh = e.it_energy_kwh from job_energy e where e.job_id = j.id;
create index jobs_energy_idx on jobs (it_energy_kwh desc nulls last, id desc);
drop index job_energy_it_idx;

-- The lock taken before a summary's figures change is now the one its job's row is updated under
-- (two summaries of one job written at once would otherwise both hold a shared lock and wait on each
-- other to update the job).
create or replace function job_totals_energy_lock() returns trigger language plpgsql as $$
begin
    if tg_op = 'UPDATE' and (old.gpu_hours, old.it_energy_kwh, old.facility_energy_kwh)
            is not distinct from (new.gpu_hours, new.it_energy_kwh, new.facility_energy_kwh) then
        return new;
    end if;
    perform 1 from jobs where id = coalesce(new.job_id, old.job_id) for no key update;
    return coalesce(new, old);
end
$$;

-- The jobs' copy of their summaries' energy, after the totals (the job rows are locked already).
create function jobs_energy_key() returns trigger language plpgsql as $$
begin
    if tg_op = 'DELETE' then
        update jobs j set it_energy_kwh = null
        from old_rows o
        where j.id = o.job_id and j.it_energy_kwh is not null;
    else
        update jobs j set it_energy_kwh = n.it_energy_kwh
        from new_rows n
        where j.id = n.job_id and j.it_energy_kwh is distinct from n.it_energy_kwh;
    end if;
    return null;
end
$$;
create trigger jobs_energy_key_insert after insert on job_energy
    referencing new table as new_rows for each statement execute function jobs_energy_key();
create trigger jobs_energy_key_update after update on job_energy
    referencing new table as new_rows for each statement execute function jobs_energy_key();
create trigger jobs_energy_key_delete after delete on job_energy
    referencing old table as old_rows for each statement execute function jobs_energy_key();
