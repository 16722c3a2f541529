# One image holds every pushgw binary; docker-compose.yml and deploy/k8s
# pick the service with the container's command (/usr/local/bin/<service>).
#
# Build stage: the Makefile's own `make build` (same packages, same flags),
# with CGO off so the binaries are static and run on any base image.
ARG GO_VERSION=1.26
FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first: this layer is reused until go.mod/go.sum change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ENV CGO_ENABLED=0
RUN make build BIN=/out GO="go" \
 && rm -f /out/pushload

# Runtime stage: a small base with a shell and busybox wget, because the
# compose healthchecks and the Kubernetes preStop hook (deploy/k8s) run them
# inside the container; the binaries themselves need nothing but the kernel.
FROM alpine:3.20
RUN addgroup -S -g 10001 pushgw \
 && adduser -S -D -H -u 10001 -G pushgw -s /sbin/nologin pushgw
COPY --from=build /out/ /usr/local/bin/
# Numeric so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 10001:10001
# No ENTRYPOINT: the command names the service, e.g. ["room", "-tcp", ...].
CMD ["pushctl", "-h"]
