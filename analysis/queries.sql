-- Example DuckDB queries over a results folder (docs/results-schema.md has every column).
-- Run one with:   rlp-tune query ROOT "<SQL>" [--format table|csv|json]
-- or in Python:   from rlp_tune.analysis import connect; connect(ROOT).sql("<SQL>").show()
-- Views: metrics (long, deduplicated), trials (one row per trial, dotted config columns — quote
-- them: "rlp.lam"), final (one row per trial: config + last value of each metric as "<split>.<metric>").
-- Accuracies are fractions in [0, 1]; head = -1 is the mean over heads; layer '' = not per layer.

-- 1. Where is the sweep? Trials per status and the epochs they reached.
SELECT status, count(*) AS trials, min(epochs_done) AS min_epochs, max(epochs_done) AS max_epochs
FROM trials GROUP BY status ORDER BY trials DESC;

-- 2. Trials still RUNNING whose row was not updated for 10 minutes (stalled or dead workers).
SELECT trial_id, epochs_done, to_timestamp(updated) AS last_update
FROM trials WHERE status = 'RUNNING' AND updated < epoch(now()) - 600 ORDER BY updated;

-- 3. Final metrics against λ (paper figs 4 / 5), one row per trial.
SELECT trial_id, "rlp.lam" AS lam, "train.rand_acc" AS rand_acc, "train.acc" AS train_acc,
       "test.acc" AS test_acc, "train.acc" - "test.acc" AS gap
FROM final ORDER BY lam, trial_id;

-- 4. The same averaged over seeds, with the spread: one row per λ.
SELECT "rlp.lam" AS lam, count(*) AS seeds,
       avg("train.rand_acc") AS rand_acc, stddev_samp("train.rand_acc") AS rand_acc_sd,
       avg("test.acc") AS test_acc, stddev_samp("test.acc") AS test_acc_sd
FROM final GROUP BY lam ORDER BY lam;

-- 5. Model selection on the validation split (never on test). The column "val.acc" exists only when
--    data.val_fraction > 0 (else: Binder Error, column not found).
SELECT trial_id, "rlp.lam", "rlp.heads", "rlp.hidden", "rlp.n", "val.acc", "test.acc"
FROM final WHERE "val.acc" IS NOT NULL ORDER BY "val.acc" DESC LIMIT 10;

-- 6. Random-label accuracy per layer at each trial's last epoch (figs 2C / 8A): the head -1 row (mean
--    over heads) where written, else the mean of the heads.
SELECT m.trial_id, t."rlp.lam" AS lam, m.layer,
       coalesce(max(m.value) FILTER (WHERE m.head = -1), avg(m.value) FILTER (WHERE m.head >= 0)) AS rand_acc
FROM metrics m JOIN trials t USING (sweep, trial_id)
WHERE m.split = 'train' AND m.metric = 'rand_acc'
  AND m.epoch = (SELECT max(epoch) FROM metrics x WHERE x.trial_id = m.trial_id)
GROUP BY ALL ORDER BY lam, m.trial_id, m.layer;

-- 7. Learning curves of one trial (fig 2A): accuracies and penultimate random-label accuracy per epoch.
SELECT epoch,
       max(value) FILTER (WHERE split = 'train' AND metric = 'acc' AND layer = '') AS train_acc,
       max(value) FILTER (WHERE split = 'test' AND metric = 'acc' AND layer = '') AS test_acc,
       avg(value) FILTER (WHERE split = 'train' AND metric = 'rand_acc' AND layer = 'penultimate' AND head >= 0) AS rand_acc
FROM metrics WHERE trial_id = (SELECT min(trial_id) FROM trials)
GROUP BY epoch ORDER BY epoch;

-- 8. Spread across the parallel heads of multi-head trials (A.8): per trial, last epoch, penultimate.
SELECT trial_id, epoch, count(*) AS heads, min(value) AS worst_head, max(value) AS best_head
FROM metrics
WHERE metric = 'rand_acc' AND split = 'train' AND layer = 'penultimate' AND head >= 0
GROUP BY trial_id, epoch
QUALIFY epoch = max(epoch) OVER (PARTITION BY trial_id)
ORDER BY trial_id;

-- 9. Throughput per trial (samples per second, mean over epochs).
SELECT trial_id, avg(value) AS samples_per_s FROM metrics
WHERE split = 'train' AND metric = 'samples_per_s' GROUP BY trial_id ORDER BY samples_per_s DESC;

-- 10. Which config keys did the sweep vary? (one row per column with > 1 distinct value)
SELECT key, count(DISTINCT v) AS n_values, min(v) AS first_as_text, max(v) AS last_as_text
FROM (UNPIVOT (SELECT COLUMNS('^(data|model|rlp|optim|probe)\.')::VARCHAR FROM trials)
      ON COLUMNS(*) INTO NAME key VALUE v)
GROUP BY key HAVING count(DISTINCT v) > 1 ORDER BY key;

-- 11. Sanity: no duplicate keys survive (expect 0 rows), and rows per trial.
SELECT sweep, trial_id, epoch, split, layer, head, metric, count(*) AS n
FROM metrics GROUP BY ALL HAVING count(*) > 1;
SELECT trial_id, count(*) AS rows, max(epoch) AS epochs FROM metrics GROUP BY trial_id ORDER BY trial_id;
