-- A site's write token: what a site's Prometheus (or vmagent, Alloy) remote-writes with. It writes the
-- GPU series of that site's nodes only, registering nodes not seen before in that site; it reads nothing.
-- Only its digest is kept; the token is shown once when made.
alter table sites add column write_token_sha256 bytea unique;
