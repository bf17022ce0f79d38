# Placeholder until the service issue: installs the library and runs its tests' doctests.
FROM python:3.11-slim
WORKDIR /app
COPY . /app
RUN pip install --no-cache-dir .
CMD ["python", "-c", "import optim; print(optim.__doc__)"]
