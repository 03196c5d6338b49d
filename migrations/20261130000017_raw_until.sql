-- The time of a node's latest stored GPU sample (raw or settled), kept by the ingest under the node's
-- lock: a batch starting after it cannot repeat a stored sample, so the duplicate check reads no
-- blocks for it (a streaming collector's every batch). Never lower than the truth: settling moves
-- samples without changing it, and retention or a deletion only leave it high (the check then reads
-- blocks and finds none). Null: nothing stored.
alter table nodes add column raw_until timestamptz;

update nodes n
set raw_until = m.t_end
from (
    select node_id, max(t_end) as t_end
    from (
        select node_id, max(t_end) as t_end from gpu_raw group by node_id
        union all
        select node_id, max(t_end) as t_end from gpu_settled group by node_id
    ) both_kinds
    group by node_id
) m
where n.id = m.node_id;
