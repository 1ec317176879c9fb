# The project's one image: autotuner-operator, autotuner-api, autotuner-runner and autotuner-sim
# (the Helm chart runs the operator and api from it; the operator runs the runner and simulator from it).
# Not built in CI here (no Docker engine on the development machines).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core core
COPY operator operator
COPY api api
COPY runner runner
COPY simulator simulator
COPY devtools devtools
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[operator,api,runner,sim]'

FROM python:3.11-slim
RUN useradd --uid 10001 --create-home autotuner
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001
ENTRYPOINT []
CMD ["autotuner-operator"]
