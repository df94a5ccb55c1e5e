"""The Celery application: `celery -A celery_app worker -Q default,gemini,whatsapp`, `celery -A celery_app beat`."""

from celery_app.app import app

__all__ = ["app"]
