"""The averages job: each service's median return interval for a salon, and each client's own rhythm.

stats.py holds the numbers (pure), visits.py what a visit is, plan.py a run as data, job.py the run itself
(`calculate_averages`), postgres.py and sqlite.py the two backends that carry a plan out.
"""

from reactivation.timing.averages.job import AveragesResult, calculate_averages

__all__ = ["AveragesResult", "calculate_averages"]
