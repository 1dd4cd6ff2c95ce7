# rt-actors production image: the same production install as on a server (docs/deployment.md).
#   docker build -t rt-actors .
#   docker run -p 6001:6001 -e RT_API_KEY=… -e RT_JWT_SECRET=… rt-actors start
# Debian 12 (glibc 2.36): the uWebSockets.js binary needs glibc >= 2.27, so no Alpine (musl).
FROM node:20-bookworm-slim

WORKDIR /app
ENV NODE_ENV=production
# What `npm install --omit=dev` builds from (its `prepare` script compiles TypeScript into dist/).
COPY package.json package-lock.json tsconfig.json tsconfig.runtime.json ./
COPY bin ./bin
COPY scripts ./scripts
COPY src ./src
COPY workers ./workers
COPY actors ./actors
# The dashboard's page (--dashboard), served as is.
COPY static ./static
RUN npm install --omit=dev --no-audit --no-fund && npm cache clean --force

USER node
ENV RT_PORT=6001
EXPOSE 6001
# Node itself is PID 1 (no npm, no shell in between), so SIGTERM reaches the server and drains it.
STOPSIGNAL SIGTERM
# `rt-actors health` reads the configuration `start` reads from the environment and RT_CONFIG (port,
# interface, https with RT_TLS_CERT): set options there rather than as `start` flags, and it follows them.
HEALTHCHECK --interval=10s --timeout=6s --start-period=20s \
  CMD ["node", "bin/rt-actors.js", "health"]
ENTRYPOINT ["node", "bin/rt-actors.js"]
CMD ["start"]
