-- Charts and coverage of long jobs read a GPU's hourly sums over weeks: 2,160 rows a GPU for 90 days,
-- each on its own heap page (an hour's rows of every GPU are written together). The sums in the index
-- let those reads stay in its leaf pages (an index-only scan once the hours are vacuumed).
create index gpu_hour_cover_idx on gpu_hour (node_id, gpu_index, hour)
    include (minutes, last_minute, covered_s, energy_j, util_covered, util_covered_s);
