# The one image every Deployment runs (`ebox worker NAME`, `ebox api`, `ebox migrate`, ...).
# Not built in CI here (no Docker engine on the build machines); `docker build -t ebox .`.
FROM rust:1.94-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p ebox

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/ebox /usr/local/bin/ebox
USER 10001
ENTRYPOINT ["ebox"]
