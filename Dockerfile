# Wattlas server and collector in one image. Templates and the stylesheet are compiled in.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bins

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/wattlas-server /src/target/release/wattlas-collector /usr/local/bin/
ENV WATTLAS_BIND=0.0.0.0:8080
EXPOSE 8080
CMD ["wattlas-server"]
