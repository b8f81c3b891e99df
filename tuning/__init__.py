"""Optuna studies of `target` per cell (target task, method, model, intermediate init) on shared storage.

`space` (what a study samples), `storage` (journal, database, dead workers), `study` (the shared queue and its
workers), `trial` (one `target` run, pruned on English dev), `results` (what a stopping worker leaves) and
`best_params` (the tuned values the grid reads). The entry point is `pipelines/tune.py`.
"""
