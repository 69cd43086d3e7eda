# syntax=docker/dockerfile:1
#
# The silo binary (server, CLI and task-runner agent) as a container image.
# The deployment bundles Silo generates for aws and azure runners run it as
# "silo runner", configured through the environment: SILO_SERVER,
# SILO_RUNNER_TOKEN, SILO_STORAGE_ROOT, SILO_VCPU, SILO_MEMORY, SILO_CA_FILE
# and HTTPS_PROXY (see `silo runner -h`).
#
#   docker build -t silo .
#   docker build --build-arg VERSION=1.2.3 -t silo:1.2.3 .

# The toolchain .ci/scan checks the standard library of (govulncheck).
FROM golang:1.27.3 AS build
WORKDIR /src
# Pure Go (SQLite is modernc.org/sqlite), so the binary is static and runs on
# distroless/static.
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
	go build -trimpath -ldflags="-s -w${VERSION:+ -X github.com/silofl/silo.Version=$VERSION}" -o /silo ./cmd/silo

# CA certificates and tzdata included; runs as uid/gid 65532 (nonroot), which
# the AWS boot script gives the runner's data directory to.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /silo /silo
USER nonroot:nonroot
ENTRYPOINT ["/silo"]
CMD ["runner"]
