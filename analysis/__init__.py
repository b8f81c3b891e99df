"""The analysis stage: runs from the tracking server -> XTREME / XTREME-R scores and comparisons: built with the analysis issue."""
