"""The averages job: each service's median return interval for a salon, and each client's own rhythm."""

from reactivation.timing.averages.postgres import AveragesResult, calculate_averages

__all__ = ["AveragesResult", "calculate_averages"]
