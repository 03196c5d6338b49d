-- A replaced node or meter token keeps working until the collector first uses the new one (it has
-- switched), or for 24 hours at most: an admin can rotate a token without a gap in the data.
alter table nodes add column prev_token_sha256 bytea, add column prev_token_until timestamptz;
alter table meters add column prev_token_sha256 bytea, add column prev_token_until timestamptz;
