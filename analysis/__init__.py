"""The analysis stage: `evaluate` runs from the tracking server -> XTREME / XTREME-R scores, gains with intervals,
low-resource and typological views, as tables, figures and one HTML report (entry point `analysis`, `main.py`)."""
