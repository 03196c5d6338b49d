-- Every job's view gets bounds on its energy (issue 35, item 1): the stored views lack them, so they
-- are recomputed by the background task (views read before then show no bound).
update job_energy set stale = true;
