FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md alembic.ini ./
COPY reactivation ./reactivation
COPY celery_app ./celery_app
COPY alembic ./alembic
RUN pip install --no-cache-dir -e '.[flower]'
USER nobody
