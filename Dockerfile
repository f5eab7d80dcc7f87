# etalon with its web app: `docker build -t etalon . && docker run -p 8501:8501 etalon`
# (then http://localhost:8501). Not built in CI: the development machine cannot build images.
FROM python:3.11-slim

WORKDIR /opt/etalon
COPY pyproject.toml README.md ./
COPY etalon ./etalon
COPY data ./data
RUN pip install --no-cache-dir ".[ui]"

# the history of calculations, kept on a volume so it outlives the container
ENV ETALON_HISTORY=/var/lib/etalon/history.sqlite
VOLUME /var/lib/etalon
EXPOSE 8501
# inside a container the app must listen beyond loopback for the published port to reach it
CMD ["etalon", "ui", "--host", "0.0.0.0", "--port", "8501"]
