# AdaFuse Studio: the Gradio app on the default model pair (CPU). Build and run:
#   docker build -t adafuse-studio .
#   docker run -p 7860:7860 -v adafuse-cache:/data adafuse-studio
# The first start converts the default pair into /data/adafuse (a minute or two); later starts,
# with the volume kept, load in seconds. GPU: build FROM a CUDA PyTorch image instead and run
# with --gpus all; nothing else changes.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ADAFUSE_CACHE=/data/adafuse \
    HF_HOME=/data/huggingface \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860 \
    GRADIO_ANALYTICS_ENABLED=False \
    TOKENIZERS_PARALLELISM=false

RUN useradd --create-home --uid 1000 app \
    && mkdir -p /data/adafuse /data/huggingface \
    && chown -R app:app /data

WORKDIR /home/app/studio
COPY requirements.txt .
# CPU wheels of torch keep the image small; requirements.txt installs the default pair's GGUFs.
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu -r requirements.txt

COPY --chown=app:app app.py ./
COPY --chown=app:app adafuse ./adafuse
COPY --chown=app:app assets ./assets

USER app
VOLUME ["/data"]
EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/', timeout=4)"
# ADAFUSE_PRELOAD=1: load (and on first start convert) the default pair while the page comes up.
ENV ADAFUSE_PRELOAD=1
CMD ["python", "app.py"]
