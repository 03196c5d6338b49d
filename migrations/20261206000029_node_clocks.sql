-- Clocks (issue 32, item 4): each collector sends its clock with every push; the server keeps each
-- node's last offset against its own (positive: the node is behind) and when it was measured.
alter table nodes add column clock_offset_ms int, add column clock_checked_at timestamptz;
