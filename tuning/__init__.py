"""Optuna studies per target task (learning rate, adapter sizes) on shared storage: built with the tuning issue."""
