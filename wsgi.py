"""Gunicorn entry point: ``gunicorn -c gunicorn.conf.py wsgi:app``."""
from termweb import create_app

app = create_app()
