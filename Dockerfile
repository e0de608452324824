FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY requirements/base.txt requirements/base.txt
RUN pip install -r requirements/base.txt

COPY . .
RUN useradd --create-home --uid 10001 gatehouse \
    && mkdir -p /app/var && chown -R gatehouse /app/var \
    && DEBUG=true python manage.py collectstatic --noinput

USER gatehouse
ENV DEBUG=false PORT=8000 GATEHOUSE_SERVE_STATIC=1
EXPOSE 8000
CMD ["sh", "-c", "python manage.py migrate --noinput && exec python -m config.serve -b 0.0.0.0 -p ${PORT} config.asgi:application"]
