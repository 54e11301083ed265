# syntax=docker/dockerfile:1
#
# Agate's container image, for those who build with Docker or another BuildKit engine:
#   docker build -t agate:dev --build-arg VERSION=dev --build-arg REVISION=$(git rev-parse HEAD) .
#
# `make image` builds the same image without any container engine (deploy/image) and is
# what the project tests; this file is kept for users with Docker and is not built in CI.
# Both give a static, cgo-free /agate run as 65532:65532, with no shell, entrypoint
# ["/agate"], command ["serve"], and /var/lib/agate as the one writable data directory.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# The version and commit come from Go's build information (`agate version`): a build
# from a git clone stamps them; one without .git in the context reports "(devel)".
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/agate ./cmd/agate \
 && mkdir -p /out/data

# distroless/static: CA certificates, /etc/passwd with nonroot (65532), no shell.
# Pin it by digest in a release pipeline.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=devel
ARG REVISION=unknown
LABEL org.opencontainers.image.title="agate" \
      org.opencontainers.image.description="Agate: a policy decision point for the actions of AI agents, served over gRPC" \
      org.opencontainers.image.source="https://github.com/agate-pdp/agate" \
      org.opencontainers.image.licenses="NOASSERTION" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build --chown=0:0 --chmod=0555 /out/agate /agate
COPY --from=build --chown=65532:65532 --chmod=0700 /out/data /var/lib/agate
USER 65532:65532
WORKDIR /var/lib/agate
# A container is reached from outside itself: listen on every interface, not loopback.
ENV AGATE_GRPC_ADDR=:7070 AGATE_HTTP_ADDR=:7071
EXPOSE 7070 7071
STOPSIGNAL SIGTERM
ENTRYPOINT ["/agate"]
CMD ["serve"]
