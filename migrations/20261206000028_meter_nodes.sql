-- Sensors calibrated against the meters (issue 35, item 6): a meter that measures a known set of nodes
-- (a PDU or rack meter) names them, and what their collectors measured is compared with what it saw.
create table meter_nodes (
    meter_id int not null references meters(id) on delete cascade,
    node_id int not null references nodes(id) on delete cascade,
    primary key (meter_id, node_id)
);
