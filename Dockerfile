# samgw in a container: a static binary on a distroless base, running as a
# non-root user, with the shipped scripts baked in and /data for what needs
# disk. The build flags are packaging/release.sh's.
#
#   docker build -t samgw --build-arg VERSION=v1.2.0 .
#   docker run -p 4000:4000 -v samgw-data:/data samgw
#   docker run -p 4000:4000 -v "$PWD/handlers:/scripts:ro" samgw serve --listen 0.0.0.0:4000 --scripts /scripts
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/samgw ./cmd/samgw \
 && /out/samgw version

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/samgw /usr/local/bin/samgw
COPY scripts /scripts
VOLUME /data
WORKDIR /data
USER nonroot:nonroot
EXPOSE 4000 9100
ENTRYPOINT ["/usr/local/bin/samgw"]
CMD ["serve", "--listen", "0.0.0.0:4000", "--scripts", "/scripts", "--metrics-listen", "0.0.0.0:9100"]
