# syntax=docker/dockerfile:1
#
# The colony binary (coordinator, sidecar and CLI) in a small static image
# that runs as a non-root user:
#
#   docker build -t ghcr.io/colonymesh/colony:dev .
#   docker run --rm ghcr.io/colonymesh/colony:dev --help
#
# deploy/compose and deploy/k8s use it; `go test ./deploy/...` checks this file.

# Build on the builder's own platform and cross-compile for the target one:
# CGO_ENABLED=0 makes a static binary that needs no libc in the final image.
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS
ARG TARGETARCH
# VERSION and COMMIT are what `colony version` reports: .git is not in the
# build context, so pass them (make docker does).
ARG VERSION=devel
ARG COMMIT=
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" -o /out/colony ./cmd/colony
# The data directory, owned by the runtime user: a fresh Docker volume
# mounted there takes this ownership, so the coordinator can write to it.
RUN mkdir -p /out/data

# distroless/static: CA certificates, tzdata, /etc/passwd with nonroot
# (65532), and no shell or package manager.
FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/colony /colony
COPY --from=build --chown=65532:65532 /out/data /var/lib/colony
USER 65532:65532
# 7400 coordinator gRPC, 7401 raft, 7402 coordinator metrics, 7500 sidecar.
EXPOSE 7400 7401 7402 7500
ENTRYPOINT ["/colony"]
