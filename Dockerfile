# syntax=docker/dockerfile:1
#
# The LLM API gateway as a container image.
#
#   docker build -t llm-gateway .                                        # the gateway (the last stage, the default)
#   docker build --target fake-upstream -t llm-gateway-fake-upstream .   # the fake OpenAI API, for demos only
#
#   docker buildx build --platform linux/amd64,linux/arm64 -t ... --push .   # multi-architecture
#
# The gateway is published with the README's "Publish / container" command, plus the target architecture and
# ReadyToRun (precompiled code: faster start and first requests, docs/benchmarks.md), so the command the tests
# exercise is the one that builds this image. The build stages run on the builder's own platform and cross-compile
# for the target (no emulation). The final image holds the published output only: no SDK, no source.
# It runs as the non-root user "app" (UID 1654) of the chiseled image (no shell, no package manager) on port 8080.
#
# Base images: these tags move with every .NET patch. For reproducible, reviewed builds pin them by digest in CI:
#   --build-arg SDK_IMAGE=mcr.microsoft.com/dotnet/sdk:10.0@sha256:<digest> \
#   --build-arg RUNTIME_IMAGE=mcr.microsoft.com/dotnet/aspnet:10.0-noble-chiseled@sha256:<digest>
# (`docker buildx imagetools inspect <image>` prints the digest), and let a bot (Renovate, Dependabot) raise them.

ARG SDK_IMAGE=mcr.microsoft.com/dotnet/sdk:10.0
ARG RUNTIME_IMAGE=mcr.microsoft.com/dotnet/aspnet:10.0-noble-chiseled

# ---- build: restore (cached until a project file or package version changes), then publish ----
FROM --platform=$BUILDPLATFORM ${SDK_IMAGE} AS build
ARG TARGETARCH
ENV DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
WORKDIR /src
# Only what restore reads: configuration (appsettings.json, tenants) changes never invalidate this layer.
COPY Directory.Build.props Directory.Packages.props ./
COPY src/Gateway/Gateway.csproj src/Gateway/
RUN dotnet restore src/Gateway -a $TARGETARCH -p:PublishReadyToRun=true
# The configuration and the price table, published beside the binary (/app/appsettings.json, /app/pricing.json).
COPY appsettings.json pricing.json ./
COPY src/Gateway/ src/Gateway/
RUN dotnet publish src/Gateway -c Release -o out/gateway -a $TARGETARCH --self-contained false -p:PublishReadyToRun=true

# ---- fake upstream (docker compose --profile demo): never part of the gateway image ----
FROM --platform=$BUILDPLATFORM ${SDK_IMAGE} AS fake-build
ARG TARGETARCH
ENV DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
WORKDIR /src
COPY Directory.Build.props Directory.Packages.props ./
COPY tests/FakeUpstream/ tests/FakeUpstream/
RUN dotnet publish tests/FakeUpstream -c Release -o out/fake-upstream -a $TARGETARCH --self-contained false

FROM ${RUNTIME_IMAGE} AS fake-upstream
WORKDIR /app
COPY --from=fake-build /src/out/fake-upstream ./
COPY tests/Fixtures/openai-recordings/ Fixtures/openai-recordings/
USER $APP_UID
EXPOSE 9090
ENTRYPOINT ["dotnet", "FakeUpstream.dll", "--urls", "http://+:9090"]

# ---- the gateway image (last stage: what `docker build .` produces) ----
FROM ${RUNTIME_IMAGE} AS gateway
WORKDIR /app
COPY --from=build /src/out/gateway ./
# The listening address comes from the configuration (Urls, default http://+:8080); an empty ASPNETCORE_HTTP_PORTS
# keeps Kestrel from warning that Urls overrides the base image's port setting.
# DOTNET_TC_CallCountingDelayMs=0: tiered compilation starts counting calls (and moving hot code to optimised tier 1)
# at once instead of after a quiet 100 ms, which a loaded pod never has (x10 on one CPU): a pod started under load
# reaches full speed sooner. It changes only the start; docs/benchmarks.md "Cold start under load (#15)".
# DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=1: socket completions run on the epoll threads (one per CPU) instead of
# a hop to the thread pool each: -10% CPU per request on one CPU (docs/benchmarks.md "Inline socket completions (#15,
# fourth pass)"). The gateway's CPU-heavy stages over large inputs hop to the pool themselves (Forwarding/ThreadPoolHop).
ENV ASPNETCORE_HTTP_PORTS= \
    DOTNET_CLI_TELEMETRY_OPTOUT=1 \
    DOTNET_TC_CallCountingDelayMs=0 \
    DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=1
# Numeric, so Kubernetes' runAsNonRoot can verify it without a runAsUser.
USER $APP_UID
EXPOSE 8080
# /app/appsettings.json is the configuration (mount yours over it, or set GATEWAY_CONFIG); environment variables
# override any key (Gateway__Upstream__BaseUrl). SIGTERM drains: see docs/operations.md.
ENTRYPOINT ["dotnet", "Gateway.dll"]
