-- How each minute's power was read and what the sensor's readings say beside its energy (issue 35,
-- item 3): seconds integrated from 1-s averages and from instant readings; over the counter's intervals
-- the counter's energy and the readings' integral; over intervals with instant readings their integral
-- and the power readings'. Minutes rolled up before this have zeros: they compare nothing.
alter table gpu_minute
    add column average_s double precision not null default 0,
    add column instant_s double precision not null default 0,
    add column counter_j double precision not null default 0,
    add column counter_read_j double precision not null default 0,
    add column counter_compared_s double precision not null default 0,
    add column instant_j double precision not null default 0,
    add column instant_avg_j double precision not null default 0,
    add column instant_compared_s double precision not null default 0;
