#!/bin/sh
# Run once by the primary's image at initialisation (/docker-entrypoint-initdb.d): standbys may stream
# from it with the same scram password (the `ha` profile of docker-compose.yml).
set -e
echo "host replication all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
